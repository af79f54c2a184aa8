import t from 'tap'
import { build, bodyFor, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { FleetReporter, type Figures } from '../src/fleet/reporter.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }

interface Stats { hits: number, misses: number, instance: string, fleet: { source: string, instances: Array<{ id: string, self: boolean, hits: number, misses: number }>, total: { hits: number, misses: number, instances: number, hitRate: number } } }

t.test('GET /api/narrative/stats: every live instance on the Redis and their sum, whichever answers', async t => {
  const s = await stack(t, { JWT_SECRET: SECRET })
  const a = await build(t, { env: s.env })
  const b = await build(t, { env: s.env })
  // Another deployment on the same Redis (another prefix) is not part of this fleet.
  const other = await build(t, { env: { ...s.env, CACHE_PREFIX: `${s.prefix}x` } })
  for (let n = 0; n < 3; n++) await a.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(n) })
  for (let n = 0; n < 3; n++) await b.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(n) })
  await b.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(0) })
  await Promise.all([a.fleet.report(), b.fleet.report(), other.fleet.report()])

  const res = await b.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })
  t.equal(res.statusCode, 200)
  const stats = res.json() as Stats
  t.equal(stats.instance, b.fleet.id, 'the instance that answered')
  t.same([stats.hits, stats.misses], [4, 0], 'top level: this instance, as before')
  t.equal(stats.fleet.source, 'redis')
  t.same(stats.fleet.instances.map(i => i.id).sort(), [a.fleet.id, b.fleet.id].sort(), 'both instances of this fleet, not the other prefix')
  t.equal(stats.fleet.instances[0].self, true, 'the answering instance first')
  t.match(stats.fleet.total, { hits: 4, misses: 3, instances: 2, hitRate: 0.5714 })

  // A clean stop takes the instance out at once.
  await a.close()
  const after = (await b.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })).json() as Stats
  t.same(after.fleet.instances.map(i => i.id), [b.fleet.id])
})

t.test('without Redis the fleet is the instance alone', async t => {
  const app = await build(t, { env: { JWT_SECRET: SECRET, DATABASE_URL: '' }, waitForDatabase: false })
  const stats = (await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: auth })).json() as Stats
  t.equal(stats.fleet.source, 'local')
  t.equal(stats.fleet.instances.length, 1)
})

t.test('FleetReporter: a report expires, a failing Redis is counted', async t => {
  const zero = Object.fromEntries(['hits', 'staleHits', 'durableHits', 'misses', 'fallbacks', 'generations', 'refreshStarted', 'refreshSkippedLocked', 'refreshSucceeded', 'refreshFailed', 'analyticsRecorded', 'analyticsWritten', 'analyticsDropped'].map(k => [k, 0])) as Figures
  t.throws(() => new FleetReporter({ redis: undefined, prefix: 'Bad Prefix', id: 'x', host: 'h', pid: 1, snapshot: () => ({ ...zero, breaker: 'closed' }) }), /prefix must be a cache prefix/)
  t.throws(() => new FleetReporter({ redis: undefined, prefix: 'p', id: 'x', host: 'h', pid: 1, intervalMs: 5000, ttlMs: 1000, snapshot: () => ({ ...zero, breaker: 'closed' }) }), /ttlMs \(1000\) must be above intervalMs/)
  const failing = new Proxy({}, { get: () => async () => { throw new Error('down') } })
  const errors: string[] = []
  const r = new FleetReporter({ redis: failing as never, prefix: 'p', id: 'x', host: 'h', pid: 1, snapshot: () => ({ ...zero, hits: 2, breaker: 'open' }), onError: e => errors.push(e.message) })
  t.equal(await r.report(), false)
  t.same(r.counters, { reported: 0, failed: 1 })
  const view = await r.view()
  t.equal(view.source, 'local', 'the view falls back to this instance')
  t.equal(view.total.hits, 2)
  t.same(errors, ['down', 'down'])
})
