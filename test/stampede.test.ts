import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { build, exampleBody, stack, bodyFor } from './helper.ts'
import { startRedisCluster } from './support/redis-server.ts'
import { freePort } from './support/ports.ts'
import { waitUntil } from './support/wait.ts'
import { uniqueDatabaseUrl } from './support/env.ts'

const N = 200

function assertOneStory (t: Test, bodies: Array<{ narrative: unknown, cache: { status: string, key: string } }>): void {
  const texts = new Set(bodies.map(b => JSON.stringify(b.narrative)))
  t.equal(texts.size, 1, 'every answer is identical')
  t.equal(new Set(bodies.map(b => b.cache.key)).size, 1, 'one key')
  t.ok(bodies.every(b => b.cache.status === 'miss' || b.cache.status === 'hit'), 'no fallback')
}

t.test(`${N} concurrent identical misses over two app instances on one Redis: one model call`, async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  const a = await build(t, { env: s.env })
  const b = await build(t, { env: s.env })
  const responses = await Promise.all(Array.from({ length: N }, (_, i) =>
    (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })))
  t.ok(responses.every(r => r.statusCode === 200), 'all 200')
  t.equal(s.openai.calls, 1, 'exactly one model call')
  assertOneStory(t, responses.map(r => r.json()))
})

t.test(`${N} concurrent identical misses over two separate server processes: one model call`, async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  const ports = [await freePort(), await freePort()]
  // Both processes share one PostgreSQL database (PGlite is single-process).
  const databaseUrl = await uniqueDatabaseUrl(t)
  const children: ChildProcess[] = ports.map(port => spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, ...s.env, DATABASE_URL: databaseUrl, PORT: String(port), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe']
  }))
  t.teardown(async () => {
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
    }
  })
  for (const port of ports) {
    await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/ready`)).ok, { timeoutMs: 30_000, what: `server on ${port}` })
  }
  const responses = await Promise.all(Array.from({ length: N }, async (_, i) => {
    const res = await fetch(`http://127.0.0.1:${ports[i % 2]}/api/narrative`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(exampleBody)
    })
    return { status: res.status, body: await res.json() as { narrative: unknown, cache: { status: string, key: string } } }
  }))
  t.ok(responses.every(r => r.status === 200), 'all 200')
  t.equal(s.openai.calls, 1, 'exactly one model call')
  assertOneStory(t, responses.map(r => r.body))

  // SIGTERM: both exit 0.
  for (const child of children) {
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    t.equal(code, 0, 'exits 0 on SIGTERM')
  }
})

t.test(`${N} concurrent identical misses on a three-node Redis Cluster: one model call`, async t => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  const s = await stack(t)
  s.openai.setLatency(300)
  const env = { ...s.env, REDIS_URL: cluster.seeds }
  const a = await build(t, { env })
  const b = await build(t, { env })
  t.equal(a.store.kind, 'cluster')
  const responses = await Promise.all(Array.from({ length: N }, (_, i) =>
    (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })))
  t.ok(responses.every(r => r.statusCode === 200), 'all 200')
  t.equal(s.openai.calls, 1, 'exactly one model call')
  assertOneStory(t, responses.map(r => r.json()))

  // Keys spread over the cluster's slots still hit afterwards.
  for (let i = 0; i < 10; i++) await a.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
  const calls = s.openai.calls
  for (let i = 0; i < 10; i++) {
    const res = await b.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
    t.equal(res.json().cache.status, 'hit')
  }
  t.equal(s.openai.calls, calls, 'the other instance hits every one')
})

t.test('in one process, concurrent identical misses share one promise before touching Redis', async t => {
  const s = await stack(t)
  s.openai.setLatency(200)
  const app = await build(t, { env: s.env })
  // Reads of the narrative's key only: the rollout's own bookkeeping reads the store too, on its own schedule.
  const reads: string[] = []
  const original = app.store.get.bind(app.store)
  app.store.get = async key => { reads.push(key); return await original(key) }
  const responses = await Promise.all(Array.from({ length: 50 }, () => app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })))
  t.ok(responses.every(r => r.statusCode === 200))
  const key = responses[0].json().cache.key
  t.equal(reads.filter(read => read === key).length, 1, 'one store read for 50 concurrent requests')
  t.equal(s.openai.calls, 1)
})

t.test('waiters learn that the value landed through pub/sub, not polling (single node and Cluster)', async t => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  for (const target of ['single', 'cluster'] as const) {
    const s = await stack(t)
    s.openai.setLatency(400)
    const env = target === 'cluster' ? { ...s.env, REDIS_URL: cluster.seeds } : s.env
    // Polling so slow that only an announcement can wake a waiter in time.
    const slowPoll = { pollMinMs: 10_000, pollMaxMs: 10_000 }
    const a = await build(t, { env, cache: slowPoll })
    const b = await build(t, { env, cache: slowPoll })
    const started = Date.now()
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })))
    const took = Date.now() - started
    t.ok(responses.every(r => r.statusCode === 200 && r.json().cache.status === 'miss'), `${target}: all answered as the one miss`)
    t.equal(s.openai.calls, 1, `${target}: one model call`)
    t.ok(took < 2000, `${target}: waiters woke on the announcement (${took} ms, poll interval 10 s)`)

    // The other operations on this store: negative cache and stale refresh.
    const bad = await a.inject({ method: 'POST', url: '/api/narrative', payload: { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } } })
    t.equal(bad.statusCode, 400, `${target}: negative cache answers 400`)
  }
})
