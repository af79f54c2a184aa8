import t, { type Test } from 'tap'
import { startRedisCluster } from './support/redis-server.ts'
import { build, exampleBody, stack } from './helper.ts'
import { waitUntil } from './support/wait.ts'

const DAY = 86_400_000

async function staleRefreshedOnce (t: Test, redisUrl?: string): Promise<void> {
  const s = await stack(t)
  if (redisUrl !== undefined) s.env.REDIS_URL = redisUrl
  let offset = 0
  const clock = (): number => Date.now() + offset
  const a = await build(t, { env: s.env, cache: { clock } })
  const b = await build(t, { env: s.env, cache: { clock } })

  const first = (await a.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  t.equal(first.cache.status, 'miss')
  t.equal(s.openai.calls, 1)

  offset = 8 * DAY // past CACHE_STALE_DAYS (7), within CACHE_TTL_DAYS (30)
  s.openai.setLatency(200)
  s.openai.setReply(() => ({ summary: 'The refreshed narrative.', bullets: ['new'] }))
  const started = Date.now()
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })))
  t.ok(Date.now() - started < 150, 'stale answers do not wait for the model')
  for (const res of answers) {
    t.equal(res.json().cache.status, 'stale')
    t.equal(res.headers['x-cache'], 'STALE')
    t.same(res.json().narrative, first.narrative, 'the old narrative is served while refreshing')
    t.ok(res.json().cache.ageSeconds >= 8 * 86400 - 5)
  }
  await waitUntil(() => a.engine.counters.refreshSucceeded + b.engine.counters.refreshSucceeded === 1, { what: 'the refresh' })
  t.equal(s.openai.calls, 2, 'one refresh across both instances')
  t.equal(a.engine.counters.refreshStarted + b.engine.counters.refreshStarted, 1)

  const after = (await b.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  t.equal(after.cache.status, 'hit', 'fresh again after the refresh')
  t.equal(after.narrative.summary, 'The refreshed narrative.')
  t.ok(after.cache.ageSeconds < 5, 'age counts from refreshed_at')
  t.equal(s.openai.calls, 2)

  const { Redis, Cluster } = await import('ioredis')
  const redis = redisUrl === undefined ? new Redis(s.redisUrl) : new Cluster(redisUrl.split(',').map(seed => ({ host: '127.0.0.1', port: Number(seed.split(':')[1]) })))
  t.teardown(() => redis.quit())
  const entry = JSON.parse((await redis.getBuffer(first.cache.key))!.subarray(14).toString())
  t.ok(entry.meta.refreshed_at > entry.meta.created_at + 7 * DAY, 'refreshed_at moved')
  t.equal(entry.meta.stale_after, entry.meta.refreshed_at + 7 * DAY, 'stale_after moved with it')
  t.ok(await redis.pttl(first.cache.key) > 29 * DAY, 'the TTL is renewed')
}

t.test('a stale entry is answered stale at once and refreshed once, even with both instances asked at the same moment', async t => {
  await staleRefreshedOnce(t)
})

t.test('the same on a three-node Redis Cluster', async t => {
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  await staleRefreshedOnce(t, cluster.seeds)
})

t.test('a failing refresh keeps the stale value', async t => {
  const s = await stack(t)
  let offset = 0
  const clock = (): number => Date.now() + offset
  const app = await build(t, { env: s.env, cache: { clock } })
  const first = (await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  offset = 8 * DAY
  s.openai.setMode('error500')
  const stale = (await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  t.equal(stale.cache.status, 'stale')
  await waitUntil(() => app.engine.counters.refreshFailed === 1, { timeoutMs: 15_000, what: 'the refresh to fail' })
  t.equal(s.openai.calls, 1 + 3, 'three attempts')
  const again = (await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  t.equal(again.cache.status, 'stale', 'still served stale')
  t.same(again.narrative, first.narrative, 'the old value is kept')
})
