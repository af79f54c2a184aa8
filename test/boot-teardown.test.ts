// test/helper.ts registers its teardown before the app boots: a boot that
// fails after the app's plugins opened Redis and the database leaves nothing
// open once the test ends.
import t from 'tap'
import { build, stack } from './helper.ts'

/** Open sockets and timers of this process, by kind. */
function resources (): Record<string, number> {
  const count: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) if (kind !== 'TTYWrap' && kind !== 'FSReqCallback') count[kind] = (count[kind] ?? 0) + 1
  return count
}

t.test('a plugin that fails to boot after the app\'s own: build rejects, and teardown closes everything the app opened', async t => {
  const s = await stack(t)
  // Warm up what the stack itself keeps open (the fake model, the shared servers' clients).
  const before = resources()
  let closedByTeardown = false
  await t.test('the failing boot', async t => {
    await t.rejects(build(t, {
      env: s.env,
      after: async fastify => {
        t.ok(fastify.redis !== undefined, 'the app had opened Redis')
        fastify.addHook('onClose', async () => { closedByTeardown = true })
        throw new Error('this plugin fails to boot')
      }
    }), /this plugin fails to boot/)
  })
  t.ok(closedByTeardown, 'the instance was closed by the test\'s teardown')
  // The database opens in the background and the Redis socket closes asynchronously: give them a moment.
  let after = resources()
  for (let i = 0; i < 40 && (after.TCPSocketWrap ?? 0) > (before.TCPSocketWrap ?? 0); i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    after = resources()
  }
  t.equal(after.TCPSocketWrap ?? 0, before.TCPSocketWrap ?? 0, `no socket left open (${JSON.stringify(before)} before, ${JSON.stringify(after)} after)`)
  t.equal(after.TCPServerWrap ?? 0, before.TCPServerWrap ?? 0, 'no server left listening')
  t.ok((after.Timeout ?? 0) <= (before.Timeout ?? 0) + 1, `no timer left running (${before.Timeout ?? 0} before, ${after.Timeout ?? 0} after)`)
})
