import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { build, stack, type NarrativeBody } from './helper.ts'
import { post, worstExcess } from './support/rollout.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { normalizeProfile, profileHash, type Profile } from '../src/domain/profile.ts'
import { inCanary } from '../src/narrative/versions.ts'
import { MemoryTokenBucket } from '../src/rollout/token-bucket.ts'

/** 500 distinct valid bodies (helper's bodyFor repeats or breaks the 100% rule past 480). */
const manyBody = (n: number): NarrativeBody => ({
  profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 20 + (n % 50), Sirius: 10 + Math.floor(n / 50) % 10, Pleiades: 5 } },
  locale: 'en',
  userId: `u-${n}`
})

/** A p95 of answer times. */
const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)]

/**
 * A steady mix of requests over three instances (three lanes, one request at a
 * time each, a few ms apart): most on a few hot keys, the rest spread over all
 * `n` (Zipf-like), until `until()` says stop.
 */
async function steadyMix (apps: FastifyInstance[], n: number, until: () => boolean): Promise<Array<{ status: string, version: string, ms: number }>> {
  const answers: Array<{ status: string, version: string, ms: number }> = []
  await Promise.all([0, 1, 2].map(async lane => {
    let k = lane
    while (!until()) {
      const i = k % 4 === 0 ? (k * 7) % n : (k * 13) % 20
      answers.push(await post(apps[k % 3], i, manyBody))
      k += 3
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }))
  return answers
}

t.test('a prompt change over three instances: answered at once from v1, v2 written in the background at ROLLOUT_RATE fleet-wide, each key once', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  // The size: 500 warm keys. The rate is raised so they take about 12 s (40 a second, a burst of 40).
  const N = 500
  const RATE = 2400
  // A slow model: an answer that waited for it would show (the machine is shared: stale answers can take a few hundred ms under load).
  const MODEL_MS = 1500
  // 3 × 48 writers at 1.5 s a call (and a little more for the write) make about 70 calls a second: the rate (40 a second),
  // not the workers, is what bounds the rollout, so the window check below fails if the bucket does not hold.
  // The look for an earlier entry may take up to Redis's command timeout (1 s), not the default 300 ms: the budget is for a
  // frozen Redis, and this test's Redis, on two cores shared with three instances, their writers, the traffic and other
  // jobs, can be slow without being frozen; the request would then take the usual path and wait for the model (seen once
  // at load 8, before a late budget timer restarted the budget: test/unit-rollout-peek.test.ts).
  const cache = { rollout: { seedIntervalMs: 2000, concurrency: 48, peekBudgetMs: 1000 } }

  // Before: three instances on v1, N keys written (the model answers at once), in batches asked of the three in parallel, then flushed to analytics.
  // (One test client writes them all: its generation rate limit, 120 a minute by default, is lifted.)
  const v1 = await Promise.all([0, 1, 2].map(async () => await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1', GENERATION_RATE_LIMIT: '0' }, cache })))
  const BATCH = 30
  for (let from = 0; from < N; from += BATCH) {
    const written = await Promise.all(Array.from({ length: Math.min(BATCH, N - from) }, async (_, j) => await post(v1[(from + j) % 3], from + j, manyBody)))
    if (written.some(w => w.version !== 'v1' || w.status !== 'miss')) t.fail(`keys ${from}… not written by v1 on request`, { written })
  }
  await Promise.all(v1.map(async app => { await app.engine.idle(); await app.db.buffer.flush() }))
  t.equal(s.openai.calls, N, 'one model call per key on v1')
  // The same steady mix as during the switch, for 2 s: the answer times to compare with.
  const beforeUntil = Date.now() + 2000
  const before = (await steadyMix(v1, N, () => Date.now() > beforeUntil)).map(a => a.ms)
  await Promise.all(v1.map(async app => { await app.db.buffer.flush(); await app.close() }))

  // The switch: three instances on v2 (the default, the newest), the model slow, so a request that waited for it would show.
  s.openai.reset()
  s.openai.setLatency(MODEL_MS)
  const switchedAt = Date.now()
  const v2 = await Promise.all([0, 1, 2].map(async () => await build(t, { env: { ...s.env, DATABASE_URL, ROLLOUT_RATE: String(RATE) }, cache })))

  // A steady mix of requests while the rollout runs, until it reports done for all N hot keys.
  let finished = false
  const traffic = steadyMix(v2, N, () => finished)
  let status = await v2[0].rollout.status()
  const deadline = Date.now() + 40_000
  while (!(status.done && status.hotKeys.sampled === N) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 500))
    status = await v2[0].rollout.status()
  }
  finished = true
  const answers = await traffic
  await Promise.all(v2.map(async app => { await app.engine.idle() }))
  const tookS = (Date.now() - switchedAt) / 1000

  t.ok(status.done, 'the rollout reports done')
  t.equal(status.active, 'v2')
  t.equal(status.hotKeys.sampled, N, `all ${N} keys are among the hot keys sampled`)
  t.same(status.hotKeys.onVersion, { v1: 0, v2: N }, 'every hot key is on v2')
  t.equal(status.hotKeys.none, 0)
  t.equal(status.remaining, 0)
  t.equal(s.openai.calls, N, 'each key written once for v2, across the three instances')
  t.equal(new Set(s.openai.requests.map(r => JSON.stringify(r.body?.messages))).size, N, 'N distinct requests to the model: no key twice')
  t.ok(s.openai.requests.every(r => JSON.stringify(r.body?.messages).includes('brief, plain-spoken')), 'every model call used the v2 prompt')

  // No request waited for the model: never a miss, and faster than one model call.
  t.ok(answers.length > 300, `a steady mix of requests (${answers.length})`)
  t.same(answers.filter(a => a.status !== 'hit' && a.status !== 'stale'), [], 'every answer a hit (v2) or stale (v1)')
  t.ok(answers.some(a => a.status === 'stale' && a.version === 'v1'), 'stale answers name v1')
  const during = answers.map(a => a.ms)
  t.ok(Math.max(...during) < MODEL_MS, `no answer waited for the model (max ${Math.max(...during).toFixed(1)} ms, a model call ${MODEL_MS} ms)`)

  // Model calls never above the rate, fleet-wide: in any window of w seconds (2 s at least), at most rate·w/60 plus the bucket's one-second burst.
  const at = s.openai.requests.map(r => r.at).sort((a, b) => a - b)
  const burst = RATE / 60
  const worst = worstExcess(at, RATE, 2000)
  const spanS = (at[at.length - 1] - at[0]) / 1000
  // A call reaches the stand-in some ms after its token was taken (a busy event loop, the HTTP request): a window of
  // arrivals can hold the tokens of a slightly longer one. 300 ms of that lag is 12 calls at this rate (150 ms was
  // passed by a CI run of three test files at once on two cores: 7.84); without the bucket the 144 writers
  // overshoot by 100 calls and more (seen: 500 calls in 7 s where the bound allows 12).
  const lagCalls = 1 + RATE / 60_000 * 300
  t.ok(worst <= lagCalls, `calls within the bound, give or take ${lagCalls.toFixed(0)} calls of arrival lag (worst excess ${worst.toFixed(2)}); ${N} calls over ${spanS.toFixed(1)} s, ${((N - burst) / spanS * 60).toFixed(0)}/min after the burst against ${RATE}/min`)

  // After: v2 answers as hits; the same mix for 2 s, to compare.
  t.equal((await post(v2[1], 3, manyBody)).status, 'hit')
  const afterUntil = Date.now() + 2000
  const after = await steadyMix(v2, N, () => Date.now() > afterUntil)
  t.same(after.filter(a => a.status !== 'hit' || a.version !== 'v2'), [], 'after: every answer a v2 hit')
  t.equal(s.openai.calls, N, 'after: no model call')
  // The comparison the issue asks for, reported (times on a shared machine are not asserted): answers during the switch cost what they cost before.
  // During the switch, stale answers (an earlier version's entry, found after today's key missed in Redis and PostgreSQL) and hits apart.
  const staleMs = answers.filter(a => a.status === 'stale').map(a => a.ms)
  const hitMs = answers.filter(a => a.status === 'hit').map(a => a.ms)
  t.comment(`rollout: ${N} keys on v2 in ${tookS.toFixed(1)} s at ROLLOUT_RATE=${RATE}/min; answer p95 before ${p95(before).toFixed(1)} ms (${before.length}), during ${p95(during).toFixed(1)} ms (${during.length}: stale ${p95(staleMs).toFixed(1)} ms × ${staleMs.length}, hit ${p95(hitMs).toFixed(1)} ms × ${hitMs.length}), after ${p95(after.map(a => a.ms)).toFixed(1)} ms (${after.length}); a model call ${MODEL_MS} ms`)

  // Rollback: PROMPT_VERSION=v1 again, the v1 entries are still there and answer at once, with no model call.
  const calls = s.openai.calls
  const back = await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' }, cache })
  for (let i = 0; i < 10; i++) {
    const answer = await post(back, i, manyBody)
    t.match(answer, { status: 'hit', version: 'v1' })
    t.ok(answer.ms < MODEL_MS)
  }
  t.equal(s.openai.calls, calls, 'rollback costs no model call')
})

t.test('pause and resume: the flag is fleet-wide and stops background writes', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  const a = await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' } })
  for (let i = 0; i < 5; i++) await post(a, i)
  await a.engine.idle()
  // Paused before the new version's instances start: their rollout would otherwise begin
  // at once (seeded from the analytics) and could write a key before the pause lands.
  await a.rollout.pause()
  const [b, c] = await Promise.all([0, 1].map(async () => await build(t, { env: { ...s.env, DATABASE_URL } })))
  await new Promise(resolve => setTimeout(resolve, 1100))
  const calls = s.openai.calls
  for (let i = 0; i < 5; i++) t.match(await post(c, i), { status: 'stale', version: 'v1' })
  await new Promise(resolve => setTimeout(resolve, 1500))
  t.equal(s.openai.calls, calls, 'paused: nothing written')
  t.equal((await c.rollout.status()).paused, true)
  await b.rollout.resume()
  await s.openai.waitForCalls(calls + 5, 10_000)
  t.pass('resumed: the queued keys are written')
})

t.test('ROLLOUT=immediate: the new version is written on request', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  const a = await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' } })
  await post(a, 1)
  await a.engine.idle()
  const b = await build(t, { env: { ...s.env, DATABASE_URL, ROLLOUT: 'immediate' } })
  t.match(await post(b, 1), { status: 'miss', version: 'v2' })
  t.equal(s.openai.calls, 2)
})

t.test('the canary: a stable share of keys on the canary version, within 2 points of what was asked', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, PROMPT_VERSION: 'v1', PROMPT_CANARY: 'v2:10', ROLLOUT: 'immediate' } })
  let onCanary = 0
  const K = 2000
  for (let i = 0; i < K; i++) {
    const profile = normalizeProfile({ classification: 'primary', primary: 'Sirius', percentages: { Sirius: (i % 200) / 2, Vega: Math.floor(i / 200) } } as Profile)
    if (app.narratives.prompts.promptFor(profile, 'en').version === 'v2') onCanary++
    t.equal(app.narratives.prompts.promptFor(profile, 'en').version === 'v2', inCanary(profileHash(profile, 'en'), 10), 'stable: by key hash')
  }
  const share = onCanary / K * 100
  t.ok(Math.abs(share - 10) <= 2, `share on the canary ${share.toFixed(1)}% (asked 10%)`)
  // Over HTTP: a key's side never changes, and the canary's answers name v2.
  const versions = new Set<string>()
  for (let i = 0; i < 40; i++) {
    const first = await post(app, i)
    const again = await post(app, i)
    t.equal(again.version, first.version)
    versions.add(first.version)
  }
  t.same([...versions].sort(), ['v1', 'v2'], 'both versions answer')
})

t.test('the token buckets: in memory, and in Redis shared by instances', async t => {
  let now = 0
  const memory = new MemoryTokenBucket(60, 2, () => now)
  t.equal(await memory.take(), 0)
  t.equal(await memory.take(), 0)
  t.equal(await memory.take(), 1000, 'empty: a token a second')
  now += 1000
  t.equal(await memory.take(), 0)
  const s = await stack(t)
  const { RedisTokenBucket } = await import('../src/rollout/token-bucket.ts')
  const clients = [new Redis(s.redisUrl), new Redis(s.redisUrl)]
  t.teardown(() => { for (const c of clients) c.disconnect() })
  const buckets = clients.map(c => new RedisTokenBucket(c, `${s.prefix}:bucket`, 120, 2))
  const taken = (await Promise.all([0, 1, 2, 3].map(async i => await buckets[i % 2].take()))).filter(w => w === 0).length
  t.equal(taken, 2, 'two instances share one bucket of 2')
})
