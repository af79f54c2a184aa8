// Redis alive but refusing or stalling: CLIENT PAUSE WRITE, out of memory
// (noeviction), and connections killed mid-command with CLIENT KILL.
import t from 'tap'
import { build, bodyFor, stack } from '../helper.ts'
import { startRedis } from '../support/redis-server.ts'
import { sleep, waitUntil } from '../support/wait.ts'
import { auditValues, lockKeys, percentile, postNarrative, redisClient, startLoad, summary, waitRecovered, twoAppsOnOwnRedis } from './helpers.ts'

const breaker = { failureThreshold: 5, cooldownMs: 500 }

t.test('CLIENT PAUSE WRITE: reads go on, writes stall; requests started during the pause answer 200 within 1.5 s; values stay sound', async t => {
  const { redis, s, apps } = await twoAppsOnOwnRedis(t, breaker)
  for (let i = 0; i < 10; i++) await postNarrative(apps[0], bodyFor(i)) // 10 hits
  const admin = redisClient(t, redis.url)
  // New keys during the pause: GET answers (null), then SET NX for the lock stalls.
  let n = 10
  const load = startLoad(apps, i => bodyFor(i % 2 === 0 ? i % 10 : n++), 6, 400)
  await sleep(200)
  const pausedAt = Date.now()
  await admin.client('PAUSE', 2500, 'WRITE')
  await sleep(2700)
  const results = await load.stop()
  const during = results.filter(r => r.at >= pausedAt && r.at < pausedAt + 2500)
  t.comment(`during the pause: ${summary(during)}`)
  t.ok(during.length > 10, 'requests were served during the pause')
  t.same(results.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  // Builds already under way when the pause began are not bounded yet: see the reliability table.
  t.same(during.filter(r => r.ms > 1500).map(r => `${r.ms} ms ${r.status}`), [], 'requests started during the pause: none slower than 1.5 s')
  t.ok(during.some(r => r.status === 'hit'), 'reads still served hits')

  await waitRecovered(apps, bodyFor(0))
  const after = await postNarrative(apps[0], bodyFor(5000))
  t.equal(after.status, 'miss', 'writes are back: a new key is built and cached')
  t.equal((await postNarrative(apps[1], bodyFor(5000))).status, 'hit')
  const audit = await auditValues(admin, s.prefix)
  t.same(audit.problems, [], `${audit.keys} values: sound`)
})

t.test('out of memory (maxmemory 1mb, noeviction): every request 200 within 1.5 s, hits still served, nothing half-written; with room again, caching resumes', async t => {
  // A fresh redis-server already uses about 0.9 MB: with a few clients it is out of memory from the start.
  const redis = await startRedis({ args: ['--maxmemory', '1mb', '--maxmemory-policy', 'noeviction'] })
  t.teardown(() => redis.stop())
  const s = await stack(t)
  const env = { ...s.env, REDIS_URL: redis.url }
  const app = await build(t, { env, breaker })
  const admin = redisClient(t, redis.url)
  const chunk = 'x'.repeat(8 * 1024)
  let oom = ''
  for (let i = 0; i < 200 && oom === ''; i++) {
    await admin.set(`filler:${s.prefix}:${i}`, chunk).catch(err => { oom = (err as Error).message })
  }
  t.match(oom, /OOM/, 'Redis refuses writes')

  const calls = s.openai.calls
  const refused = []
  for (let i = 0; i < 30; i++) refused.push(await postNarrative(app, bodyFor(i % 5)))
  t.comment(`out of memory: ${summary(refused)}`)
  t.same(refused.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  t.same(refused.filter(r => r.ms > 1500).map(r => r.ms), [], 'none slower than 1.5 s')
  t.ok(s.openai.calls - calls <= 5, `at most one model call per key (${s.openai.calls - calls} for 5 keys): repeats come from the durable tier`)
  t.same(await lockKeys(admin, s.prefix), [], 'no lock written')
  t.equal((await auditValues(admin, s.prefix)).keys, 0, 'no value written')

  await admin.config('SET', 'maxmemory', '0')
  await waitUntil(async () => (await postNarrative(app, bodyFor(0))).status === 'hit', { timeoutMs: 10_000, intervalMs: 200, what: 'caching to resume' })
  for (let i = 0; i < 5; i++) await postNarrative(app, bodyFor(i))
  t.equal((await auditValues(admin, s.prefix)).keys, 5, 'room again: the five keys are cached, from the durable tier')

  await admin.config('SET', 'maxmemory', '1mb')
  const again = []
  for (let i = 0; i < 30; i++) again.push(await postNarrative(app, bodyFor(i % 10)))
  t.comment(`out of memory again: ${summary(again)}`)
  t.same(again.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  t.same(again.filter(r => r.ms > 1500).map(r => r.ms), [], 'none slower than 1.5 s')
  t.ok(again.some(r => r.status === 'hit'), 'reads still answer hits')
  await admin.config('SET', 'maxmemory', '0')
  const audit = await auditValues(admin, s.prefix)
  t.equal(audit.keys, 5, 'nothing new was written while out of memory')
  t.same(audit.problems, [], 'and what is there is sound')
  t.same(await lockKeys(admin, s.prefix), [])
})

t.test('connections killed mid-command (CLIENT KILL, normal and pub/sub) under load: every request 200, none past the waiter bound; values sound; announcements resume', async t => {
  const { redis, s, apps } = await twoAppsOnOwnRedis(t, breaker)
  const admin = redisClient(t, redis.url)
  const load = startLoad(apps, i => bodyFor(i % 40), 6)
  let kills = 0
  for (let i = 0; i < 15; i++) {
    await sleep(120)
    kills += Number(await admin.call('CLIENT', 'KILL', 'TYPE', i % 5 === 4 ? 'pubsub' : 'normal', 'SKIPME', 'yes'))
  }
  await sleep(300)
  const results = await load.stop()
  t.comment(`${kills} connections killed; ${summary(results)}`)
  t.ok(kills >= 15, 'connections were killed')
  t.same(results.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  // Not yet within 1.5 s: a build whose connection dies before it releases its lock leaves the
  // lock behind, and the key's next requests wait for the waiter bound (see the reliability table).
  t.same(results.filter(r => r.ms > 6500).map(r => `${r.ms} ms ${r.status}`), [], 'none waits past the waiter bound (deadline + 2 s) and one command timeout')
  t.ok(percentile(results.map(r => r.ms), 0.5) < 100, 'most requests unaffected')
  await waitRecovered(apps, bodyFor(0))
  const audit = await auditValues(admin, s.prefix)
  t.same(audit.problems, [], `${audit.keys} values: sound`)

  // The subscribers reconnected and re-subscribed: a waiter on the other instance is woken, not polled.
  s.openai.setLatency(300)
  const calls = s.openai.calls
  const started = Date.now()
  const both = await Promise.all([postNarrative(apps[0], bodyFor(7777)), sleep(50).then(() => postNarrative(apps[1], bodyFor(7777)))])
  t.same(both.map(r => r.status), ['miss', 'miss'])
  t.equal(s.openai.calls, calls + 1, 'one model call for both instances')
  t.ok(Date.now() - started < 1000, 'the waiter did not wait out a poll interval or the deadline')
})
