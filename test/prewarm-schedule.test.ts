import t from 'tap'
import type { Teardownable } from './support/env.ts'
import { Redis } from 'ioredis'
import { bodyFor, build, stack } from './helper.ts'
import { sharedRedisUrl, uniqueDatabaseUrl, uniquePrefix } from './support/env.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { RedisLeaseStore } from '../src/rollout/lease.ts'
import { ScheduledPrewarm, type PrewarmRun } from '../src/rollout/scheduled-prewarm.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
const silent = { warn: () => {}, info: () => {}, error: () => {}, debug: () => {} }
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const result = { warmed: 0, skipped: 0, failed: 0, refused: 0, budgetLeft: 0 }

async function fleet (t: Teardownable, schedule: string, run: (who: number, signal: AbortSignal) => Promise<void>, leaseTtlMs = 1000): Promise<ScheduledPrewarm[]> {
  const url = await sharedRedisUrl(t)
  const prefix = uniquePrefix('sched')
  return [0, 1, 2].map(who => {
    const client = new Redis(url)
    const scheduled = new ScheduledPrewarm({ schedule, leases: new RedisLeaseStore(client), prefix, logger: silent as never, leaseTtlMs, run: async signal => { await run(who, signal); return result } })
    t.teardown(async () => { await scheduled.close(); client.disconnect() })
    return scheduled
  })
}

t.test('a schedule firing every 2 s over three instances: each firing runs once', async t => {
  const started: Array<{ who: number, at: number }> = []
  const instances = await fleet(t, '*/2 * * * * *', async who => {
    started.push({ who, at: Date.now() })
    await sleep(300)
  })
  for (const i of instances) i.start()
  await sleep(6500)
  for (const i of instances) await i.close()
  const runs = instances.flatMap(i => i.runs)
  const firings = new Map<number, PrewarmRun[]>()
  for (const run of runs) firings.set(run.firing, [...(firings.get(run.firing) ?? []), run])
  t.ok(firings.size >= 3, `${firings.size} firings in 6.5 s`)
  for (const [firing, ran] of firings) t.equal(ran.length, 1, `firing ${new Date(firing).toISOString()} ran once`)
  t.ok(runs.every(r => r.endedAt !== undefined && r.result !== undefined && !r.takenOver))
})

t.test('a killed runner\'s lease is taken over and the firing finished by another instance', async t => {
  const ended: number[] = []
  const instances = await fleet(t, '0 0 1 1 *', async (who, signal) => {
    // Slow, and stops when its process "dies".
    for (let i = 0; i < 20 && !signal.aborted; i++) await sleep(100)
    if (signal.aborted) throw new Error('killed')
    ended.push(who)
  }, 600)
  const firing = Math.round(Date.now() / 1000) * 1000
  const fired = instances.map(async i => { await i.fire(firing) })
  await sleep(300)
  const holder = instances.findIndex(i => i.status().running !== null)
  t.ok(holder >= 0, 'one instance holds the lease and runs')
  t.equal(instances.filter(i => i.status().running !== null).length, 1, 'only one')
  instances[holder].kill()
  await Promise.all(fired)
  t.equal(ended.length, 1, 'the firing was finished once')
  t.not(ended[0], holder, 'by another instance')
  const takeover = instances[ended[0]].runs[0]
  t.equal(takeover.takenOver, true, 'which took the lease over')
  t.equal(takeover.firing, firing)
  // Done: nobody runs it again.
  await instances[(holder + 1) % 3 === ended[0] ? (holder + 2) % 3 : (holder + 1) % 3].fire(firing)
  t.equal(ended.length, 1, 'a firing marked done is not run again')
})

t.test('PREWARM_SCHEDULE in the app: one instance a firing, PREWARM_MAX_CALLS a run, progress in the status route and the metrics', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  // Six profiles requested on v1: the analytics the pre-warm reads.
  const v1 = await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' } })
  for (let i = 0; i < 6; i++) await v1.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
  await v1.engine.idle()
  await v1.db.buffer.flush()
  await v1.close()
  s.openai.reset()
  const env = { ...s.env, DATABASE_URL, JWT_SECRET: SECRET, ROLLOUT: 'immediate', PREWARM_SCHEDULE: '*/2 * * * * *', PREWARM_MAX_CALLS: '3' }
  const apps = await Promise.all([0, 1, 2].map(async () => await build(t, { env, prewarmSchedule: { leaseTtlMs: 1000 } })))
  await s.openai.waitForCalls(3, 5000)
  await s.openai.waitForCalls(6, 5000)
  await sleep(2500)
  t.equal(s.openai.calls, 6, 'six keys warmed on v2, three a run (the budget), then nothing left to do')
  const runs = apps.flatMap(a => a.prewarmSchedule?.runs ?? [])
  const perFiring = new Map<number, number>()
  for (const run of runs) perFiring.set(run.firing, (perFiring.get(run.firing) ?? 0) + 1)
  t.ok([...perFiring.values()].every(n => n === 1), `each firing ran on one instance (${perFiring.size} firings)`)
  t.ok(runs.some(r => r.result?.warmed === 3 && r.result.budgetLeft === 0), 'a run stopped at its budget')

  const denied = await apps[0].inject({ method: 'GET', url: '/api/narrative/rollout' })
  t.equal(denied.statusCode, 401)
  const res = await apps[0].inject({ method: 'GET', url: '/api/narrative/rollout', headers: auth })
  t.equal(res.statusCode, 200)
  const status = res.json()
  t.match(status, { mode: 'immediate', active: 'v2', previous: ['v1'], prewarm: { schedule: '*/2 * * * * *', maxCalls: 3 } })
  t.same(status.hotKeys, { sampled: 6, onVersion: { v1: 0, v2: 6 }, onModel: { 'gpt-4o': 6 }, none: 0 }, 'v2 on gpt-4o answers the six hot keys')
  t.equal(status.done, true)
  const metrics = await apps[0].inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /narrative_prewarm_scheduled_runs_total/)

  t.same((await apps[1].inject({ method: 'POST', url: '/api/narrative/rollout/pause', headers: auth })).json(), { paused: true })
  t.equal((await apps[1].inject({ method: 'GET', url: '/api/narrative/rollout', headers: auth })).json().paused, true)
  t.same((await apps[1].inject({ method: 'POST', url: '/api/narrative/rollout/resume', headers: auth })).json(), { paused: false })
  await sleep(300)
  const audit = await apps[0].db.database.query<{ action: string }>("SELECT action FROM audit_log WHERE action LIKE '%rollout%' ORDER BY at")
  t.ok(audit.some(r => r.action === 'POST /api/narrative/rollout/pause'), 'audited')
})
