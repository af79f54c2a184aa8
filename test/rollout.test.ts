import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { bodyFor, build, stack } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { normalizeProfile, profileHash, type Profile } from '../src/domain/profile.ts'
import { inCanary } from '../src/narrative/versions.ts'
import { MemoryTokenBucket } from '../src/rollout/token-bucket.ts'

const post = async (app: FastifyInstance, i: number): Promise<{ status: string, version: string, ms: number }> => {
  const started = performance.now()
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
  const body = res.json()
  return { status: body.cache.status, version: body.version, ms: performance.now() - started }
}

t.test('a prompt change over three instances: answered at once from v1, v2 written in the background at ROLLOUT_RATE fleet-wide, each key once', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  const N = 120
  const RATE = 600
  // A slow model: an answer that waited for it would show (the machine is shared: stale answers can take a few hundred ms under load).
  const MODEL_MS = 1500
  const cache = { rollout: { seedIntervalMs: 2000, concurrency: 8 } }

  // Before: three instances on v1, N keys written (and requested, so analytics knows them).
  const v1 = await Promise.all([0, 1, 2].map(async () => await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' }, cache })))
  for (let i = 0; i < N; i++) t.equal((await post(v1[i % 3], i)).version, 'v1')
  await Promise.all(v1.map(async app => { await app.engine.idle(); await app.db.buffer.flush() }))
  t.equal(s.openai.calls, N, 'one model call per key on v1')
  const before: number[] = []
  for (let i = 0; i < N; i++) before.push((await post(v1[i % 3], i)).ms)
  await Promise.all(v1.map(async app => { await app.close() }))

  // The switch: three instances on v2 (the default, the newest), the model slow, so a request that waited for it would show.
  s.openai.reset()
  s.openai.setLatency(MODEL_MS)
  const switchedAt = Date.now()
  const v2 = await Promise.all([0, 1, 2].map(async () => await build(t, { env: { ...s.env, DATABASE_URL, ROLLOUT_RATE: String(RATE) }, cache })))

  // A steady mix of requests while the rollout runs, until it reports done.
  const answers: Array<{ status: string, version: string, ms: number }> = []
  const traffic_ = { stop: false }
  const traffic = Promise.all([0, 1, 2].map(async lane => {
    let n = lane
    while (!traffic_.stop) {
      // Most requests on a few hot keys, the rest spread (Zipf-like).
      const i = n % 4 === 0 ? (n * 7) % N : (n * 13) % 20
      answers.push(await post(v2[n % 3], i))
      n += 3
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }))
  let status = await v2[0].rollout.status()
  const deadline = Date.now() + 40_000
  while (!(status.done && status.hotKeys.sampled === N) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 500))
    status = await v2[0].rollout.status()
  }
  traffic_.stop = true
  await traffic
  await Promise.all(v2.map(async app => { await app.engine.idle() }))
  const tookS = (Date.now() - switchedAt) / 1000

  t.ok(status.done, 'the rollout reports done')
  t.equal(status.active, 'v2')
  t.same(status.hotKeys.onVersion, { v1: 0, v2: N }, 'every hot key is on v2')
  t.equal(status.remaining, 0)
  t.equal(s.openai.calls, N, 'each key written once for v2, across the three instances')
  t.ok(s.openai.requests.every(r => JSON.stringify(r.body?.messages).includes('brief, plain-spoken')), 'every model call used the v2 prompt')

  // No request waited for the model: never a miss, and faster than one model call.
  t.ok(answers.length > 100, `a steady mix of requests (${answers.length})`)
  t.same(answers.filter(a => a.status !== 'hit' && a.status !== 'stale'), [], 'every answer a hit (v2) or stale (v1)')
  t.ok(answers.some(a => a.status === 'stale' && a.version === 'v1'), 'stale answers name v1')
  const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)]
  const during = answers.map(a => a.ms)
  t.ok(Math.max(...during) < MODEL_MS, `no answer waited for the model (max ${Math.max(...during).toFixed(1)} ms; p95 before ${p95(before).toFixed(1)} ms, during ${p95(during).toFixed(1)} ms)`)

  // Model calls never above the rate, fleet-wide: in any window of w seconds, at most rate·w/60 plus the bucket's one-second burst.
  const at = s.openai.requests.map(r => r.at).sort((a, b) => a - b)
  const burst = RATE / 60
  let worst = 0
  for (let i = 0; i < at.length; i++) {
    for (let j = i; j < at.length; j++) {
      const w = at[j] - at[i]
      // Windows of 2 s and more: the stand-in sees a call a little after its token was taken, and that jitter bunches arrivals.
      if (w < 2000) continue
      // One window per pair: calls i..j inside it.
      worst = Math.max(worst, (j - i + 1) - (burst + RATE * w / 60_000))
    }
  }
  t.ok(worst <= 2, `calls within the bound (arrivals jitter by up to a call at each end of a window) (worst excess ${worst.toFixed(2)}); ${N} keys in ${tookS.toFixed(1)} s, ${(N / tookS * 60).toFixed(0)}/min against ${RATE}/min`)
  t.comment(`rollout: ${N} keys, ${tookS.toFixed(1)} s, p95 before ${p95(before).toFixed(1)} ms, during ${p95(during).toFixed(1)} ms`)

  // After: v2 answers as hits.
  t.equal((await post(v2[1], 3)).status, 'hit')

  // Rollback: PROMPT_VERSION=v1 again, the v1 entries are still there and answer at once, with no model call.
  const calls = s.openai.calls
  const back = await build(t, { env: { ...s.env, DATABASE_URL, PROMPT_VERSION: 'v1' }, cache })
  for (let i = 0; i < 10; i++) {
    const answer = await post(back, i)
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
