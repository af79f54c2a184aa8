// Redis as a process: killed, frozen (SIGSTOP) and thawed, restarted, all under load.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from '../helper.ts'
import { startRedis } from '../support/redis-server.ts'
import { sleep, waitUntil } from '../support/wait.ts'
import { auditValues, lockKeys, postNarrative, redisClient, startLoad, summary, twoAppsOnOwnRedis } from './helpers.ts'

const KEYS = 30
const breaker = { failureThreshold: 5, cooldownMs: 500 }

function watchBreaker (t: Test, app: FastifyInstance): string[] {
  const seen: string[] = []
  const timer = setInterval(() => { if (seen[seen.length - 1] !== app.breaker.state) seen.push(app.breaker.state) }, 5)
  timer.unref()
  t.teardown(() => clearInterval(timer))
  return seen
}

t.test('Redis killed under load: every request answers 200 within 1.5 s, the breaker opens; restarted, it closes and values are sound', async t => {
  const { redis, s, apps } = await twoAppsOnOwnRedis(t, breaker)
  const states = apps.map(a => watchBreaker(t, a))
  const load = startLoad(apps, i => bodyFor(i % KEYS), 6)
  await sleep(500)
  await redis.kill()
  await waitUntil(() => apps.every(a => a.breaker.state !== 'closed'), { timeoutMs: 5000, what: 'both breakers to open' })
  await sleep(700)
  await redis.restart()
  await waitUntil(() => apps.every(a => a.breaker.state === 'closed'), { timeoutMs: 10_000, intervalMs: 20, what: 'both breakers to close' })
  await sleep(500)
  const results = await load.stop()
  t.comment(summary(results))
  t.ok(results.length > 100, `a real load (${results.length} requests)`)
  t.same(results.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  const slow = results.filter(r => r.ms > 1500)
  t.same(slow.map(r => `${r.ms} ms ${r.status}`), [], 'none slower than 1.5 s')
  t.ok(results.some(r => r.status === 'fallback' || r.status === 'durable'), 'served without Redis while it was down')
  for (const seen of states) t.match(seen.join(' > '), /closed > open( > half-open > open)*( > half-open)? > closed/, `breaker: ${seen.join(' > ')}`)

  const check = redisClient(t, redis.url)
  const audit = await auditValues(check, s.prefix)
  t.ok(audit.keys > 0, `values written after the restart (${audit.keys})`)
  t.same(audit.problems, [], 'every value decodes and is the model\'s narrative for its key')
  await waitUntil(async () => (await lockKeys(check, s.prefix)).length === 0, { timeoutMs: 3000, what: 'no lock left' })
})

t.test('Redis frozen (SIGSTOP) under load: 200s, within 1.5 s for requests started while frozen; breakers open and close; thawed: late commands corrupt nothing and no key is left stuck', async t => {
  const redis = await startRedis()
  t.teardown(async () => { redis.thaw(); await redis.stop() })
  const s = await stack(t)
  s.openai.setLatency(20)
  const env = { ...s.env, REDIS_URL: redis.url }
  const apps = [await build(t, { env, breaker }), await build(t, { env, breaker })]
  const states = apps.map(a => watchBreaker(t, a))
  // Half the keys built before the freeze (hits), the rest new during it.
  for (let i = 0; i < KEYS / 2; i++) await postNarrative(apps[0], bodyFor(i))
  let offset = 0
  const load = startLoad(apps, i => bodyFor((i + offset) % KEYS), 6)
  await sleep(300)
  offset = KEYS / 2
  const frozenAt = Date.now()
  redis.freeze()
  // New keys asked on each instance while frozen: their reads time out until the breakers open.
  const probes = []
  for (let j = 0; j < 12 && apps.some(a => a.breaker.state === 'closed'); j++) probes.push(...await Promise.all(apps.map(a => postNarrative(a, bodyFor(1000 + j)))))
  // Snapshot of the histories now: one breaker may already be half-open (its cool-down over) when the other opens.
  const openedWhileFrozen = states.map(seen => seen.includes('open'))
  await sleep(Math.max(0, frozenAt + 2500 - Date.now()))
  redis.thaw()
  const thawedAt = Date.now()
  await waitUntil(() => apps.every(a => a.breaker.state === 'closed'), { timeoutMs: 10_000, intervalMs: 20, what: 'both breakers to close' })
  await sleep(500)
  const results = await load.stop()
  t.comment(summary(results))
  t.same(results.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  const during = [...results.filter(r => r.at >= frozenAt && r.at < thawedAt), ...probes]
  t.comment(`started while frozen: ${summary(during)}`)
  t.ok(during.length > 10, 'requests were served while frozen')
  // Builds already under way at the freeze are not bounded yet: see the open issues in the reliability table.
  t.same(during.filter(r => r.ms > 1500).map(r => `${r.ms} ms ${r.status} started ${r.at - frozenAt} ms after the freeze`), [], 'none started while frozen took over 1.5 s')
  t.same(openedWhileFrozen, [true, true], 'both breakers opened while frozen')
  for (const seen of states) t.match(seen.join(' > '), /closed > open.* > closed$/, `breaker: ${seen.join(' > ')}`)

  // Commands sent into the frozen socket ran when it thawed: none may have broken a value or left a key locked.
  const check = redisClient(t, redis.url)
  const audit = await auditValues(check, s.prefix)
  t.same(audit.problems, [], `${audit.keys} values: every one decodes and is the model's narrative for its key`)
  const afterThaw = []
  for (let i = 0; i < KEYS; i++) afterThaw.push(await postNarrative(apps[i % 2], bodyFor(i)))
  t.comment(`every key once after the thaw: ${summary(afterThaw)}`)
  t.same(afterThaw.filter(r => r.ms > 1500 || r.code !== 200).map(r => `${r.code} ${r.status} ${r.ms} ms`), [], 'no key is stuck behind a lock nobody holds')
  t.same(await lockKeys(check, s.prefix), [], 'no lock left')
})

t.test('Redis restarted (graceful, its data gone): the durable tier refills it without model calls; the breaker closes', async t => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const env = { ...s.env, REDIS_URL: redis.url }
  const app = await build(t, { env, breaker })
  for (let i = 0; i < 10; i++) t.equal((await postNarrative(app, bodyFor(i))).status, 'miss')
  await app.durable.close() // the durable writes have landed
  const calls = s.openai.calls
  const load = startLoad([app], i => bodyFor(i % 10), 4)
  await sleep(300)
  await redis.restart()
  await waitUntil(() => app.breaker.state === 'closed' && app.store !== undefined, { timeoutMs: 10_000, intervalMs: 20, what: 'the breaker to close' })
  await waitUntil(async () => (await postNarrative(app, bodyFor(0))).status === 'hit', { timeoutMs: 10_000, intervalMs: 100, what: 'hits to resume' })
  const results = await load.stop()
  t.comment(summary(results))
  t.same(results.filter(r => r.code !== 200), [], 'every request answered 200')
  t.same(results.filter(r => r.ms > 1500).map(r => r.ms), [], 'none slower than 1.5 s')
  const statuses = []
  for (let i = 0; i < 10; i++) statuses.push((await postNarrative(app, bodyFor(i))).status)
  t.ok(statuses.every(st => st === 'hit' || st === 'durable'), `every key back from Redis or PostgreSQL (${statuses.join(',')})`)
  t.equal(s.openai.calls, calls, 'the restart cost no model call')
  const audit = await auditValues(redisClient(t, redis.url), s.prefix)
  t.equal(audit.keys, 10, 'Redis refilled')
  t.same(audit.problems, [])
})
