import t from 'tap'
import { build, stack } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { waitUntil } from './support/wait.ts'
import { post, worstExcess } from './support/rollout.ts'

t.test('a model change is a rollout too: answered at once from the old model\'s entries, the new model\'s written in the background at the rate', async t => {
  const s = await stack(t)
  const DATABASE_URL = await uniqueDatabaseUrl(t)
  const K = 30
  const RATE = 600
  const MODEL_MS = 1000
  // 2 × 16 writers at 1 s a call could make 32 calls a second: the rate (10 a second) is what bounds them.
  const cache = { rollout: { seedIntervalMs: 2000, concurrency: 16 } }

  // Model A writes K keys (and they are requested, so analytics knows them).
  const a = await build(t, { env: { ...s.env, DATABASE_URL, OPENAI_MODEL: 'model-a' }, cache })
  for (let i = 0; i < K; i++) t.match(await post(a, i), { status: 'miss', version: 'v2', engine: 'model-a' })
  await a.engine.idle()
  await a.db.buffer.flush()
  t.ok(s.openai.requests.every(r => r.body?.model === 'model-a'))
  // Paused before model B's instances start (their rollout would begin at once, seeded from the analytics): first, what requests see.
  await a.rollout.pause()
  await a.close()

  // Restart with model B: every key misses model B's entries, and is answered at once from model A's.
  s.openai.reset()
  s.openai.setLatency(MODEL_MS)
  const b = await Promise.all([0, 1].map(async () => await build(t, { env: { ...s.env, DATABASE_URL, OPENAI_MODEL: 'model-b', ROLLOUT_RATE: String(RATE) }, cache })))
  for (let i = 0; i < K; i++) {
    const answer = await post(b[i % 2], i)
    t.match(answer, { status: 'stale', version: 'v2', engine: 'model-a' }, 'stale, from the entry model A wrote')
    t.ok(answer.ms < MODEL_MS, 'at once')
  }
  t.equal(s.openai.calls, 0, 'no model call on a request\'s path')
  const paused = await b[0].rollout.status()
  t.match(paused, { model: 'model-b', previousModels: ['model-a'], remaining: K, done: false, hotKeys: { sampled: K, onModel: { 'model-a': K, 'model-b': 0 }, onVersion: { v2: K } } }, 'the status names both models')

  // Resumed: model B writes every key in the background, at the rate, each once.
  await b[1].rollout.resume()
  const done = await waitUntil(async () => { const status = await b[0].rollout.status(); return status.done ? status : undefined }, { timeoutMs: 20_000, intervalMs: 200, what: 'the rollout to model B to report done' })
  t.equal(s.openai.calls, K, 'each key written once by model B')
  t.ok(s.openai.requests.every(r => r.body?.model === 'model-b'), 'every call to model B')
  const worst = worstExcess(s.openai.requests.map(r => r.at), RATE, 1000)
  t.ok(worst <= 1 + RATE / 60_000 * 150, `calls within ROLLOUT_RATE=${RATE}/min (worst excess ${worst.toFixed(2)})`)
  t.match(done, { done: true, remaining: 0, hotKeys: { sampled: K, onModel: { 'model-a': 0, 'model-b': K } } }, 'every hot key on model B')
  for (let i = 0; i < K; i++) t.match(await post(b[i % 2], i), { status: 'hit', version: 'v2', engine: 'model-b' })

  // Back to model A: its entries are still there (a hit, no call); ROLLOUT=immediate with a third model: a miss on request, as before.
  t.match(await post(await build(t, { env: { ...s.env, DATABASE_URL, OPENAI_MODEL: 'model-a' }, cache }), 1), { status: 'hit', engine: 'model-a' })
  t.equal(s.openai.calls, K)
  t.match(await post(await build(t, { env: { ...s.env, DATABASE_URL, OPENAI_MODEL: 'model-c', ROLLOUT: 'immediate' } }), 1), { status: 'miss', engine: 'model-c' })
})
