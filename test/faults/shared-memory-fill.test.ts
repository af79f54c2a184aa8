// Shared-memory fill: refusals must not cost shared memory without bound.
// The attack found: each distinct profile that broke a domain rule wrote a
// `neg:` key to Redis (about 270 bytes, for up to 15 minutes), with no limit:
// one client wrote 1,500 a second, about 360 MB in 15 minutes, which under
// allkeys-lru evicts narratives, locks and rate-limit counters. Refused
// profiles were also recorded in requested_profiles, and pre-warm rebuilt
// them without checking them again, spending model calls on them.
//
// The bound chosen: refusals are remembered in the refusing process only (its
// body memo, at most 2,000 bodies), so a client's refusals write 0 keys to
// Redis a minute, at any rate; they are counted in the analytics under one
// key with no profile, systems or user, so they coalesce into one row a flush
// and write nothing to requested_profiles or the per-user index. Pre-warm
// checks every stored profile again as a request would be checked.
import t from 'tap'
import { build, stack } from '../helper.ts'
import { redisClient } from './helpers.ts'
import { mintAdminToken } from '../../src/admin/token.ts'
import type { AnalyticsEvent } from '../../src/analytics/event.ts'

const SECRET = 'fault-suite-secret-that-is-long-enough-000'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'admin', 3600)}` }

/** Distinct profiles, each breaking a domain rule in one of three ways. */
function ruleBreaking (i: number): object {
  const a = `Sys${i}`
  const b = `Alt${i}`
  switch (i % 3) {
    case 0: return { profile: { classification: 'unresolved', percentages: { [a]: 60, [b]: 50 } }, userId: `attacker-${i}` }
    case 1: return { profile: { classification: 'primary', primary: a, percentages: { [b]: 10 } }, userId: `attacker-${i}` }
    default: return { profile: { classification: 'hybrid', hybrid: [a, 'Vega'], percentages: { [b]: 10, Vega: 5 } }, userId: `attacker-${i}` }
  }
}

t.test('thousands of distinct rule-breaking profiles from one client write no key to Redis and no profile to the database', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const redis = redisClient(t, s.redisUrl)
  // The instance's own fleet report (plugins/fleet.ts) is not of this test.
  const keysOfTest = async (): Promise<string[]> => (await redis.keys(`*${s.prefix}*`)).filter(k => !k.startsWith(`{${s.prefix}:fleet}`))
  t.same(await keysOfTest(), [], 'nothing of this test in Redis before')
  const memoryBefore = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1])

  const N = 3000
  const started = Date.now()
  for (let i = 0; i < N; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: ruleBreaking(i), remoteAddress: '203.0.113.7' })
    if (res.statusCode !== 400) t.fail(`request ${i} answered ${res.statusCode}`)
  }
  const seconds = (Date.now() - started) / 1000
  const keys = await keysOfTest()
  t.same(keys.slice(0, 5), [], `no key written for ${N} refusals in ${seconds.toFixed(1)} s from one client (${keys.length} found): the bound is 0 keys per client per minute`)
  const memoryAfter = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1])
  t.comment(`Redis used_memory ${memoryBefore} -> ${memoryAfter} bytes (shared with other tests; the key count above is the proof)`)
  t.equal(s.openai.calls, 0, 'no model call')

  await app.db.buffer.flush()
  const [rows] = await app.db.database.query<{ errors: string, error_rows: string, profiles: string, user_keys: string }>(
    `SELECT (SELECT COALESCE(sum(count), 0) FROM analytics_events WHERE event = 'error') AS errors,
            (SELECT count(*) FROM analytics_events WHERE event = 'error') AS error_rows,
            (SELECT count(*) FROM requested_profiles) AS profiles,
            (SELECT count(*) FROM user_keys) AS user_keys`)
  t.equal(Number(rows.errors), N, 'every refusal is still counted as a request')
  t.ok(Number(rows.error_rows) <= Math.ceil(seconds) + 2, `in ${rows.error_rows} coalesced rows (one key for all refusals), not one per profile`)
  t.equal(Number(rows.profiles), 0, 'no refused profile reaches requested_profiles (pre-warm\'s list)')
  t.equal(Number(rows.user_keys), 0, 'nor the per-user index')
})

t.test('pre-warm checks every stored profile again: what a request would be refused is never sent to the model', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, SYSTEMS: 'Vega,Sirius,Rigel,Arcturus' } })
  const at = Date.now()
  // Rows as older code (or a hand-written INSERT) could have left them.
  const stored: Array<{ profile: object, locale: string }> = [
    { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 40, Sirius: 20 } }, locale: 'en' }, // valid
    { profile: { classification: 'unresolved', percentages: { Vega: 60, Sirius: 50 } }, locale: 'en' }, // sums to 110
    { profile: { classification: 'unresolved', percentages: { 'Vega<script>': 10 } }, locale: 'en' }, // not a name the schema accepts
    { profile: { classification: 'primary', primary: 'Vega', hybrid: ['Vega', 'Sirius'], percentages: { Vega: 40, Sirius: 20 } }, locale: 'en' }, // hybrid on a primary profile
    { profile: { classification: 'unresolved', percentages: { Zeta: 10 } }, locale: 'en' }, // not in SYSTEMS
    { profile: { classification: 'unresolved', percentages: { Rigel: 10 } }, locale: 'en-zz99' } // not a valid tag
  ]
  const events: AnalyticsEvent[] = stored.map((row, i) => ({ at: at + i, event: 'miss', key: `${s.prefix}:v1:stored:${i}`, systems: [], profile: row.profile, locale: row.locale }))
  await app.db.analytics.insertBatch(events)
  const res = await app.inject({ method: 'POST', url: '/api/narrative/prewarm', headers: auth, payload: { top: 10, period: '1d' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { warmed: 1, skipped: 0, failed: 0, refused: 5 }, 'the valid one is warmed, the five others refused')
  t.equal(s.openai.calls, 1, 'one model call, for the valid profile only')
  const prompt = JSON.stringify(s.openai.requests[0]?.body?.messages)
  t.notMatch(prompt, /script|Zeta|zz99/, 'nothing of the refused rows reached a prompt')
})
