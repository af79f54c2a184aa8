import t from 'tap'
import { build, bodyFor, stack } from '../helper.ts'
import { startRedis } from '../support/redis-server.ts'
import { startFaultProxy } from '../support/fault-proxy.ts'
import { sleep, waitUntil } from '../support/wait.ts'
import { lockKeys, postNarrative, redisClient } from './helpers.ts'

t.test('a lock whose SET NX timed out (Redis paused for writes) is not left behind', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url } })
  const admin = redisClient(t, redis.url)
  await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE')
  t.equal((await postNarrative(app, bodyFor(1))).status, 'fallback')
  await sleep(800)
  t.same(await lockKeys(admin, s.prefix), [], 'no lock held by nobody')
  const second = await postNarrative(app, bodyFor(1))
  t.ok(second.ms < 1500, `answered in ${second.ms} ms`)
  t.not(second.status, 'fallback')
})

t.test('Redis frozen while a build is under way: the rest of the model call plus one command timeout', async t => {
  const redis = await startRedis()
  t.teardown(async () => { redis.thaw(); await redis.stop() })
  const s = await stack(t)
  s.openai.setLatency(500)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url } })
  const pending = postNarrative(app, bodyFor(1))
  await s.openai.waitForCalls(1)
  const frozenAt = Date.now()
  redis.freeze()
  const res = await pending
  redis.thaw()
  t.equal(res.code, 200)
  // About 500 ms of model left, then write, release and announce share one 1 s timeout.
  t.ok(Date.now() - frozenAt < 1800, `answered ${Date.now() - frozenAt} ms after the freeze`)
})

t.test('a connection lost mid-build: its lock does not outlive it', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await startFaultProxy({ target: { port: redis.port } })
  t.teardown(() => proxy.close())
  const s = await stack(t)
  s.openai.setLatency(300)
  const app = await build(t, { env: { ...s.env, REDIS_URL: proxy.url(redis.url) } })
  const pending = postNarrative(app, bodyFor(1))
  await s.openai.waitForCalls(1)
  proxy.setMode('reset')
  t.equal((await pending).code, 200)
  proxy.setMode('pass')
  await waitUntil(() => (app.redis as unknown as { status: string }).status === 'ready', { timeoutMs: 5000, what: 'redis back' })
  await waitUntil(async () => (await lockKeys(redisClient(t, redis.url), s.prefix)).length === 0, { timeoutMs: 3000, what: 'the lock to be released' })
  const second = await postNarrative(app, bodyFor(1))
  t.ok(second.ms < 1500, `answered in ${second.ms} ms`)
  t.ok(second.status === 'miss' || second.status === 'durable', `built or restored, not a fallback (${second.status})`)
})
