import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, exampleBody, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { waitUntil } from './support/wait.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }

async function narrative (app: FastifyInstance, body: object): Promise<{ cache: { status: string, key: string } }> {
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: body })
  return res.json()
}

async function settled (app: FastifyInstance): Promise<void> {
  await app.engine.idle() // the builds' writes have started (the durable ones) and landed
  await app.db.buffer.flush()
  await app.durable.close()
}

t.test('analytics figures match a known sequence of requests', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, MODEL_PRICES: '{"gpt-4o":{"input":2.5,"output":10}}', REDIS_MONTHLY_COST_USD: '30' } })
  // Arcturus-primary profile: 1 miss, 3 hits. Vega-primary profiles: 2 misses, 1 hit. One domain-rule error.
  await narrative(app, exampleBody)
  for (let i = 0; i < 3; i++) await narrative(app, exampleBody)
  await narrative(app, bodyFor(1))
  await narrative(app, bodyFor(2))
  await narrative(app, bodyFor(2))
  await app.inject({ method: 'POST', url: '/api/narrative', payload: { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } } })
  await settled(app)
  const res = await app.inject({ method: 'GET', url: '/api/narrative/analytics?period=1d', headers: auth })
  t.equal(res.statusCode, 200)
  const a = res.json()
  t.equal(a.period, '1d')
  t.equal(a.totalRequests, 8, '7 answered + 1 error')
  t.equal(a.cacheHits, 4)
  t.equal(a.cacheMisses, 3)
  t.equal(a.hitRate, 0.5)
  t.equal(a.generations, 3)
  // The refused request counts as a request, but names no system: a refused profile never feeds the top systems.
  t.same(a.topSystems.slice(0, 2), [{ system: 'Arcturus', count: 4 }, { system: 'Vega', count: 3 }])
  t.ok(a.avgGenerationTime >= 0)
  // The fake model reports usage per call; the cost is tokens times the price.
  const usage = s.openai.requests.length
  t.equal(usage, 3)
  t.ok(a.tokens.prompt > 0 && a.tokens.completion > 0)
  const openai = (a.tokens.prompt * 2.5 + a.tokens.completion * 10) / 1e6
  t.equal(a.estimatedCost.openai, Math.round(openai * 10_000) / 10_000)
  t.equal(a.estimatedCost.redis, 1, 'REDIS_MONTHLY_COST_USD 30 over one day')
  t.equal(a.estimatedCost.withoutCache, Math.round(openai / 3 * 8 * 10_000) / 10_000, 'eight requests at the average cost per call')
  const bad = await app.inject({ method: 'GET', url: '/api/narrative/analytics?period=2w', headers: auth })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /period must be one of "1d", "7d", "30d"/)

  const stats = (await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })).json()
  t.match(stats, { hits: 4, misses: 3, engineVersion: 'narrative@1.0.0', promptVersion: 'v2', model: 'gpt-4o', canary: null, ttlDays: 30, store: 'redis', breaker: 'closed' })
  t.equal(stats.hitRate, Math.round(4 / 7 * 10_000) / 10_000)
  t.ok(stats.keys >= 3)
  t.match(stats.memoryUsed, /^[0-9.]+[BKMG]$/)
})

t.test('DELETE user removes that user\'s rows and no one else\'s; cached narratives stay', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  await narrative(app, { ...bodyFor(1), userId: 'alice' })
  await narrative(app, { ...bodyFor(2), userId: 'alice' })
  await narrative(app, { ...bodyFor(1), userId: 'bob' })
  await settled(app)
  t.same((await app.db.analytics.keysOfUser('alice')).length, 2)
  const res = await app.inject({ method: 'DELETE', url: '/api/narrative/user/alice', headers: auth })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { deleted_cache_entries: 0, deleted_analytics_rows: 2, deleted_index_entries: 2 })
  t.match(res.json().rationale, /no userId/)
  t.same(await app.db.analytics.keysOfUser('alice'), [])
  t.same((await app.db.analytics.keysOfUser('bob')).length, 1, 'bob untouched')
  const rows = await app.db.database.query<{ n: string }>('SELECT count(*) AS n FROM analytics_events WHERE user_id = $1', ['bob'])
  t.equal(Number(rows[0].n), 1)
  t.equal((await narrative(app, bodyFor(1))).cache.status, 'hit', 'the shared narrative is still cached')
})

t.test('a pattern delete touches nothing outside the namespace, and reaches the durable tier', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const keys = []
  for (let i = 0; i < 3; i++) keys.push((await narrative(app, bodyFor(i))).cache.key)
  await settled(app)
  const outside = [`other${s.prefix}:v1:x`, `${s.prefix}x:v1:y`, `lock:${s.prefix}:v1:unrelated`]
  for (const k of outside) await redis.set(k, '1')

  const all = await app.inject({ method: 'DELETE', url: '/api/narrative/cache?pattern=*', headers: auth })
  t.equal(all.statusCode, 200)
  t.equal(all.json().deleted, 3)
  t.equal(all.json().deletedDurable, 3)
  t.equal(all.json().match, `${s.prefix}:*`)
  for (const k of outside) t.equal(await redis.exists(k), 1, `${k} untouched`)
  t.equal((await narrative(app, bodyFor(0))).cache.status, 'miss', 'invalidated in both tiers: regenerated')

  const one = await app.inject({ method: 'DELETE', url: `/api/narrative/cache?pattern=${encodeURIComponent(keys[0])}`, headers: auth })
  t.equal(one.json().deleted, 1, 'a full key inside the namespace')
  for (const pattern of ['[a-z]*', 'x y', '../x', 'a'.repeat(201), '']) {
    const res = await app.inject({ method: 'DELETE', url: `/api/narrative/cache?pattern=${encodeURIComponent(pattern)}`, headers: auth })
    t.equal(res.statusCode, 400, `pattern ${JSON.stringify(pattern.slice(0, 20))} refused`)
    t.match(res.json().message, /querystring\.pattern/)
  }
})

t.test('prewarm warms the most requested profiles that are missing or stale', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  for (let i = 0; i < 4; i++) await narrative(app, bodyFor(i))
  await settled(app)
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  await app.inject({ method: 'DELETE', url: '/api/narrative/cache?pattern=*', headers: auth })
  const calls = s.openai.calls
  const res = await app.inject({ method: 'POST', url: '/api/narrative/prewarm', headers: auth, payload: { top: 3 } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { warmed: 3, skipped: 0, failed: 0, refused: 0 })
  t.equal(s.openai.calls, calls + 3)
  const again = await app.inject({ method: 'POST', url: '/api/narrative/prewarm', headers: auth, payload: { top: 3 } })
  t.same(again.json(), { warmed: 0, skipped: 3, failed: 0, refused: 0 }, 'fresh entries are skipped')
  const bad = await app.inject({ method: 'POST', url: '/api/narrative/prewarm', headers: auth, payload: { top: 0 } })
  t.equal(bad.statusCode, 400)
})

/** Generate, drop the Redis copy, ask again: answered from the durable tier, no model call, Redis re-populated. */
async function flushCostsNoModelCall (t: Test, env: Record<string, string>, expectedDatabase: string): Promise<void> {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, ...env } })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const first = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  await settled(app)
  await redis.del(first.json().cache.key)
  const second = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.equal(second.json().cache.status, 'durable')
  t.equal(second.headers['x-cache'], 'DURABLE')
  t.same(second.json().narrative, first.json().narrative, 'identical answer')
  t.equal(s.openai.calls, 1, 'no model call')
  const third = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.equal(third.json().cache.status, 'hit', 'Redis re-populated')
  t.equal((await app.inject('/ready')).json().database, expectedDatabase)
}

t.test('durable tier: a Redis flush costs no model call (PostgreSQL)', async t => {
  await flushCostsNoModelCall(t, {}, 'up')
})

t.test('durable tier: a Redis flush costs no model call (embedded PGlite)', async t => {
  await flushCostsNoModelCall(t, { DATABASE_URL: '', DATA_DIR: t.testdirName }, 'embedded')
})

t.test('the generation rate limit counts only requests that make the model write', async t => {
  const s = await stack(t)
  const env = { ...s.env, GENERATION_RATE_LIMIT: '3' }
  const a = await build(t, { env })
  const b = await build(t, { env })
  for (let i = 0; i < 3; i++) t.equal((await narrative(a, bodyFor(i))).cache.status, 'miss')
  for (let i = 0; i < 10; i++) t.equal((await narrative(a, bodyFor(i % 3))).cache.status, 'hit', 'hits are never limited')
  const limited = await a.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(50) })
  t.equal(limited.statusCode, 429)
  t.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 60, `Retry-After ${limited.headers['retry-after']}`)
  t.match(limited.json().message, /3 new narratives a minute/)
  const elsewhere = await b.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(51) })
  t.equal(elsewhere.statusCode, 429, 'the count is shared across instances through Redis')
  const otherClient = await b.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(52), remoteAddress: '198.51.100.7' })
  t.equal(otherClient.statusCode, 200, 'another client has its own budget')
  t.equal(s.openai.calls, 4)
})

t.test('the generation rate limit counts an IPv6 client by its /64: rotating addresses inside it does not help', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, GENERATION_RATE_LIMIT: '2' } })
  const from = async (remoteAddress: string, i: number): Promise<number> => (await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i), remoteAddress })).statusCode
  t.equal(await from('2001:db8:7:1::a', 60), 200)
  t.equal(await from('2001:db8:7:1::b', 61), 200)
  t.equal(await from('2001:db8:7:1:ffff:1:2:3', 62), 429, 'a third address of the same /64 shares its budget')
  t.equal(await from('2001:db8:7:2::a', 63), 200, 'the next /64 has its own')
  t.equal(s.openai.calls, 3)
})

t.test('waiting for someone else\'s generation never counts', async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  const env = { ...s.env, GENERATION_RATE_LIMIT: '1' }
  const a = await build(t, { env })
  const b = await build(t, { env })
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(9) })))
  t.same(answers.map(r => r.statusCode), Array(10).fill(200), 'one generation, nine waiters, no 429')
  t.equal(s.openai.calls, 1)
})

t.test('Redis down: admin routes fail closed with 503; the public route is not limited by the dead store', async t => {
  const { startRedis } = await import('./support/redis-server.ts')
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: redis.url, JWT_SECRET: SECRET, GENERATION_RATE_LIMIT: '2' }, breaker: { failureThreshold: 3, cooldownMs: 60_000 } })
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })).statusCode, 200)
  await redis.kill()
  const admin = await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })
  t.equal(admin.statusCode, 503)
  t.match(admin.json().message, /rate-limit store is unavailable/, admin.body)
  const statuses = []
  for (let i = 0; i < 4; i++) statuses.push((await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })).statusCode)
  t.same(statuses.slice(0, 2), [200, 200], 'public requests answer')
  t.equal(statuses[2], 429, 'the generation limit still holds, counted in memory')
})

t.test('PostgreSQL stopped: requests still answer, analytics dropped and counted, /ready names it', async t => {
  const { startPostgres } = await import('./support/postgres-server.ts')
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, DATABASE_URL: pg.url }, db: { buffer: { maxBuffered: 20, batchSize: 10, flushIntervalMs: 100 } } })
  t.equal((await app.inject('/ready')).json().database, 'up')
  await pg.kill()
  const started = Date.now()
  for (let i = 0; i < 40; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i % 5) })
    t.equal(res.statusCode, 200)
  }
  const perRequest = (Date.now() - started) / 40
  t.ok(perRequest < 300, `no slower than the durable read deadline (${perRequest.toFixed(0)} ms a request)`)
  await waitUntil(() => app.db.buffer.counters.dropped > 0, { timeoutMs: 10_000, what: 'dropped analytics' })
  t.ok(app.db.buffer.counters.dropped > 0, `analytics dropped and counted (${app.db.buffer.counters.dropped})`)
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 200)
  t.equal(ready.json().database, 'down')
})

t.test('a re-paid generation (PostgreSQL held the narrative but could not be read) is counted: metric, analytics, cost', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const first = await narrative(app, exampleBody)
  await settled(app)
  await redis.del(first.cache.key)
  // Two reads fail (the one before the model, and the one after the claim said the row is there):
  // the model is asked again, and the write finds the row it was paid for the first time.
  const get = app.db.narratives.get
  app.db.narratives.get = async () => { throw new Error('read failed (test)') }
  t.teardown(() => { app.db.narratives.get = get })
  const second = await narrative(app, exampleBody)
  app.db.narratives.get = get
  await settled(app)
  t.equal(second.cache.status, 'miss')
  t.equal(s.openai.calls, 2, 'paid twice')
  t.equal(app.engine.counters.repaidBuilds, 1, 'counted by the engine')
  t.match((await app.inject('/metrics')).body, /^narrative_repaid_generations_total 1$/m, 'in the metrics')
  const a = (await app.inject({ method: 'GET', url: '/api/narrative/analytics?period=1d', headers: auth })).json()
  t.equal(a.repaidGenerations, 1, 'in the analytics')
  t.equal(a.generations, 2)
  t.equal(a.totalRequests, 2, 'a re-paid generation is not a request')
  t.ok(a.estimatedCost.repaid > 0 && Math.abs(a.estimatedCost.repaid - a.estimatedCost.openai / 2) < 1e-3, `its cost is one call's (${a.estimatedCost.repaid} of ${a.estimatedCost.openai})`)
})
