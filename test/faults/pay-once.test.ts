// Issue 17: the model is paid once per distinct narrative, even when Redis is
// lost under load (flushed, or killed and restarted empty), with PostgreSQL
// slowed, and while a build is in flight. Three app instances on one Redis of
// this file's own and one PostgreSQL database; the fake model counts calls.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from '../helper.ts'
import { lastUserMessage, type FakeOpenAI } from '../support/fake-openai.ts'
import { startFaultProxy } from '../support/fault-proxy.ts'
import { startRedis, type RedisProc } from '../support/redis-server.ts'
import { uniqueDatabaseUrl } from '../support/env.ts'
import { sleep } from '../support/wait.ts'
import { zipfSampler } from '../../bench/zipf.ts'
import { mintAdminToken } from '../../src/admin/token.ts'
import { postNarrative, startLoad, summary } from './helpers.ts'

/** Requests, profiles (Zipf s = 1.1) and requests in flight of the cost workloads. */
const REQUESTS = 1200
const PROFILES = 300
const IN_FLIGHT = 48
const breaker = { failureThreshold: 5, cooldownMs: 500 }

interface Rig { redis: RedisProc, openai: FakeOpenAI, apps: FastifyInstance[] }

/** Three instances on a Redis of their own and one database (`viaDatabase` may route it through a proxy). */
async function rig (t: Test, viaDatabase = (url: string) => url): Promise<Rig> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  s.openai.setLatency(150)
  // No generation rate limit: the workload is one client asking for hundreds of new narratives.
  const env = { ...s.env, GENERATION_RATE_LIMIT: '0', REDIS_URL: redis.url, DATABASE_URL: viaDatabase(await uniqueDatabaseUrl(t)) }
  const apps = [await build(t, { env, breaker }), await build(t, { env, breaker }), await build(t, { env, breaker })]
  return { redis, openai: s.openai, apps }
}

function paidPerPrompt (openai: FakeOpenAI): { calls: number, prompts: number, ratio: number } {
  const prompts = new Set(openai.requests.map(r => lastUserMessage(r.body))).size
  return { calls: openai.calls, prompts, ratio: openai.calls / Math.max(1, prompts) }
}

/** The cost workload: Zipf over PROFILES, IN_FLIGHT at a time over the three instances, `disrupt` run halfway. */
async function costWorkload (t: Test, { apps, openai }: Rig, disrupt: () => Promise<void>): Promise<void> {
  const sample = zipfSampler(PROFILES, 1.1, 17)
  const sequence = Array.from({ length: REQUESTS }, () => sample())
  const load = startLoad(apps, i => bodyFor(sequence[i]), IN_FLIGHT, REQUESTS)
  while (load.results.length < REQUESTS / 2) await sleep(20)
  await disrupt()
  while (load.results.length < REQUESTS) await sleep(20)
  const results = await load.stop()
  await Promise.all(apps.map(a => a.engine.idle()))
  t.comment(summary(results))
  t.same(results.filter(r => r.code !== 200).map(r => r.body), [], 'every request answered 200')
  const paid = paidPerPrompt(openai)
  const repaid = apps.reduce((n, a) => n + a.engine.counters.repaidBuilds, 0)
  t.comment(`${paid.calls} model calls for ${paid.prompts} distinct prompts (${paid.ratio.toFixed(3)}); re-paid generations counted: ${repaid}`)
  t.ok(paid.prompts > 100, `a real spread of keys (${paid.prompts})`)
  t.ok(paid.ratio <= 1.01, `model calls per distinct prompt at most 1.01 (${paid.calls} for ${paid.prompts})`)
}

t.test('target 1: Redis flushed halfway under load: the model is paid once per distinct prompt', async t => {
  const r = await rig(t)
  await costWorkload(t, r, async () => { await r.redis.flushall() })
})

t.test('target 2: Redis killed (SIGKILL) halfway and restarted empty: paid once per distinct prompt', async t => {
  const r = await rig(t)
  await costWorkload(t, r, async () => {
    await r.redis.kill()
    await sleep(1000)
    await r.redis.restart()
  })
})

t.test('target 3: PostgreSQL slowed by 200 ms a round trip, Redis flushed halfway: paid once per distinct prompt', async t => {
  const base = new URL(await uniqueDatabaseUrl(t))
  const proxy = await startFaultProxy({ target: { port: Number(base.port) } })
  t.teardown(() => proxy.close())
  const r = await rig(t, url => proxy.url(url))
  proxy.setMode({ kind: 'delay', ms: 100 })
  await costWorkload(t, r, async () => { await r.redis.flushall() })
  t.same(r.apps.map(a => a.durable.readsGivenUp.timeout), [0, 0, 0], 'slow reads were waited for, not given up')
})

t.test('target 4: 1,000 identical misses over 3 instances, FLUSHALL while the build is in flight: 1 model call', async t => {
  const r = await rig(t)
  r.openai.setLatency(800)
  const answers = Promise.all(Array.from({ length: 1000 }, (_, i) => postNarrative(r.apps[i % 3], bodyFor(5000))))
  await r.openai.waitForCalls(1, 10_000)
  await r.redis.flushall()
  const results = await answers
  await Promise.all(r.apps.map(a => a.engine.idle()))
  t.comment(summary(results))
  t.same(results.filter(x => x.code !== 200).map(x => x.body), [], 'every request answered 200')
  t.same(results.filter(x => x.status === 'fallback').length, 0, 'nobody answered from the template')
  t.equal(r.openai.calls, 1, 'one model call')
  t.equal(r.apps.reduce((n, a) => n + a.buildClaims.counters.waited, 0) > 0, true, 'an instance waited on the build claim after the flush')
})

t.test('target 4 for chat completions: 300 identical requests over 3 instances, FLUSHALL while the upstream call is in flight: 1 upstream call', async t => {
  // The chat engine's build claims must see its own rows (chat_entries): a
  // waiter that takes the claim after the builder released it finds the
  // completion there, rather than paying the upstream a second time.
  const secret = 'pay-once-chat-secret-that-is-long-enough-0123'
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  s.openai.setLatency(800)
  const env = { ...s.env, JWT_SECRET: secret, REDIS_URL: redis.url, DATABASE_URL: await uniqueDatabaseUrl(t) }
  const apps = [await build(t, { env, breaker }), await build(t, { env, breaker }), await build(t, { env, breaker })]
  const made = await apps[0].inject({ method: 'POST', url: '/api/keys', headers: { authorization: `Bearer ${mintAdminToken(secret, 'alice', 3600)}` }, payload: { name: 'pay-once', rateLimit: 0 } })
  t.equal(made.statusCode, 201, 'an API key')
  const key = made.json().secret as string
  const ask = { model: 'gpt-4o', messages: [{ role: 'user', content: 'paid once, whatever Redis loses' }] }
  const answers = Promise.all(Array.from({ length: 300 }, async (_, i) => await apps[i % 3].inject({ method: 'POST', url: '/v1/chat/completions', headers: { authorization: `Bearer ${key}` }, payload: ask })))
  await s.openai.waitForCalls(1, 10_000)
  await redis.flushall()
  const results = await answers
  await Promise.all(apps.map(a => a.chat.engine.idle()))
  t.same(results.filter(r => r.statusCode !== 200).map(r => r.body), [], 'every request answered 200')
  t.same([...new Set(results.map(r => r.json().choices[0].message.content))].length, 1, 'one answer for all')
  t.equal(s.openai.calls, 1, 'one upstream call')
})
