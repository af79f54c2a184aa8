import t from 'tap'
import { AnalyticsRepository } from '../src/db/analytics-repository.ts'
import { AnalyticsRetention } from '../src/analytics/retention.ts'
import { openPostgres } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { build, stack } from './helper.ts'
import { uniqueDatabaseUrl, uniquePrefix } from './support/env.ts'
import { waitUntil } from './support/wait.ts'

const DAY_MS = 86_400_000

t.test('deleteBefore removes only older analytics rows, in batches, and keeps the per-user index and requested profiles', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const repo = new AnalyticsRepository(db)
  const key = uniquePrefix('old')
  const now = Date.now()
  const events = Array.from({ length: 25 }, (_, i) => ({
    at: i < 17 ? now - 10 * DAY_MS - i : now - i, event: 'hit' as const, key: `${key}/${i}`, systems: ['Vega'], userId: 'alice', profile: { primary: 'Vega' }, locale: 'en'
  }))
  await repo.insertBatch(events)
  t.equal(await repo.deleteBefore(now - DAY_MS, 5), 17, 'the 17 old rows, in four statements of at most 5')
  const [left] = await db.query<{ n: number, oldest: number }>("SELECT count(*) AS n, min(at) AS oldest FROM analytics_events WHERE key LIKE $1 || '/%'", [key])
  t.equal(left.n, 8)
  t.ok(left.oldest >= now - DAY_MS, 'nothing older than the cutoff is left')
  t.equal((await repo.keysOfUser('alice')).filter(k => k.startsWith(key)).length, 25, 'user_keys kept: a deletion request still finds every key')
  const [profiles] = await db.query<{ n: number }>("SELECT count(*) AS n FROM requested_profiles WHERE key LIKE $1 || '/%'", [key])
  t.equal(profiles.n, 25, 'requested_profiles kept')
  t.equal(await repo.deleteBefore(now - DAY_MS), 0, 'a second pass finds nothing')
})

t.test('AnalyticsRetention: off at 0; a failed pass is counted and the next one runs', async t => {
  const off = new AnalyticsRetention({ retentionMs: 0, deleteBefore: async () => { throw new Error('never called') } })
  off.start(0)
  t.equal(off.enabled, false)
  await off.stop()

  let calls = 0
  const cutoffs: number[] = []
  const retention = new AnalyticsRetention({
    retentionMs: 1000,
    intervalMs: 20,
    clock: () => 5000,
    deleteBefore: async before => {
      calls++
      cutoffs.push(before)
      if (calls === 1) throw new Error('database down')
      return 3
    }
  })
  retention.start(0)
  await waitUntil(() => calls >= 3, { timeoutMs: 2000, what: 'three passes' })
  await retention.stop()
  t.equal(retention.counters.failedPasses, 1)
  t.ok(retention.counters.deleted >= 6, `deleted counted (${retention.counters.deleted})`)
  t.same(new Set(cutoffs), new Set([4000]), 'the cutoff is now minus the retention')
  const after = calls
  await new Promise(resolve => setTimeout(resolve, 60))
  t.equal(calls, after, 'stopped: no more passes')
})

t.test('the server deletes analytics older than ANALYTICS_RETENTION_DAYS on its own', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, ANALYTICS_RETENTION_DAYS: '1' }, db: { retention: { firstDelayMs: 300, intervalMs: 300 } } })
  const key = uniquePrefix('served')
  app.db.buffer.record({ at: Date.now() - 2 * DAY_MS, event: 'hit', key: `${key}/old`, systems: ['Vega'] })
  app.db.buffer.record({ at: Date.now(), event: 'hit', key: `${key}/new`, systems: ['Vega'] })
  await app.db.buffer.flush()
  const rows = async (): Promise<string[]> => (await app.db.database.query<{ key: string }>("SELECT key FROM analytics_events WHERE key LIKE $1 || '/%' ORDER BY key", [key])).map(r => r.key)
  await waitUntil(async () => (await rows()).length === 1, { timeoutMs: 5000, what: 'the retention pass' })
  t.same(await rows(), [`${key}/new`], 'the two-day-old row went, today\'s stayed')
  t.ok(app.db.retention.counters.deleted >= 1)
})
