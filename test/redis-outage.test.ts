import t from 'tap'
import { build, bodyFor, stack } from './helper.ts'
import { startRedis } from './support/redis-server.ts'
import { sleep, waitUntil } from './support/wait.ts'

t.test('Redis killed under a stream of requests: every request answers 200 and the breaker opens; restarted: it closes and hits resume', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url }, breaker: { failureThreshold: 5, cooldownMs: 300 } })
  for (let i = 0; i < 5; i++) await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })

  const statuses: number[] = []
  const cacheStatuses = new Set<string>()
  const load = { stop: false }
  const loading = (async () => {
    for (let i = 0; !load.stop; i++) {
      const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i % 10) })
      statuses.push(res.statusCode)
      cacheStatuses.add(res.json().cache?.status)
    }
  })()
  await sleep(300)
  await redis.kill()
  await waitUntil(() => app.breaker.state === 'open', { timeoutMs: 5000, what: 'the breaker to open' })
  await sleep(500)
  load.stop = true
  await loading
  t.ok(statuses.length > 20, `a stream of requests (${statuses.length})`)
  t.ok(statuses.every(code => code === 200), 'every request answered 200')
  t.ok(cacheStatuses.has('fallback') || cacheStatuses.has('durable'), `served without Redis (${[...cacheStatuses].join(', ')})`)
  const ready = (await app.inject('/ready')).json()
  t.equal(ready.redis, 'down')
  t.equal(ready.breaker, 'open')
  t.equal((await app.inject('/ready')).statusCode, 200, 'degraded, not unready')

  await redis.restart()
  // The breaker lets a trial through after its cool-down; ioredis reconnects with backoff.
  await waitUntil(async () => {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(100) })
    return res.json().cache.status === 'hit'
  }, { timeoutMs: 10_000, intervalMs: 200, what: 'hits to resume' })
  t.equal(app.breaker.state, 'closed', 'the breaker closed')
  t.equal((await app.inject('/ready')).json().redis, 'up')
})

t.test('Redis frozen with SIGSTOP: requests answer within about 1.5 s; thawed: back to hits', async t => {
  const redis = await startRedis()
  t.teardown(async () => { redis.thaw(); await redis.stop() })
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url }, breaker: { failureThreshold: 5, cooldownMs: 500 } })
  const warm = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(warm.json().cache.status, 'miss')

  redis.freeze()
  const timings = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
    const started = Date.now()
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i % 3) })
    return { ms: Date.now() - started, code: res.statusCode, status: res.json().cache.status, key: res.json().cache.key }
  }))
  for (const r of timings) {
    t.equal(r.code, 200)
    t.ok(r.ms < 1600, `answered in ${r.ms} ms`)
    // A hit only for the key just built here, from the entry in hand while its write waits on the frozen Redis.
    t.ok(r.status === 'fallback' || r.status === 'durable' || (r.status === 'hit' && r.key === warm.json().cache.key), `served without Redis (${r.status})`)
  }
  // Distinct keys until five reads have timed out: then the breaker opens.
  for (let i = 10; app.breaker.state !== 'open' && i < 30; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
    t.equal(res.statusCode, 200)
  }
  t.equal(app.breaker.state, 'open', 'the breaker opened')
  // While frozen and open, requests skip Redis entirely: fast.
  const started = Date.now()
  const skip = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(2) })
  t.equal(skip.statusCode, 200)
  t.ok(Date.now() - started < 300, 'with the breaker open, no Redis wait at all')

  redis.thaw()
  await waitUntil(async () => {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
    return res.json().cache.status === 'hit'
  }, { timeoutMs: 10_000, intervalMs: 200, what: 'hits to resume after thaw' })
  t.equal(app.breaker.state, 'closed')
})

t.test('Redis down at start-up: the server starts, serves, and picks Redis up when it appears', async t => {
  const redis = await startRedis()
  await redis.kill()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url }, breaker: { failureThreshold: 5, cooldownMs: 300 } })
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(res.statusCode, 200)
  t.equal(res.json().cache.status, 'fallback')
  await redis.restart()
  await waitUntil(async () => {
    const r = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
    return r.json().cache.status === 'hit'
  }, { timeoutMs: 15_000, intervalMs: 300, what: 'the cache to come back' })
  t.pass('cached once Redis is up')
})
