// Memory that grows with every model call. The engine's shutdown signal lives
// as long as the process and is handed to every generation; a per-call signal
// combined with it through AbortSignal.any stays attached to it for ever
// (nodejs/node#55351): about 1.5 KB a call, until the heap runs out. Here
// the real app makes many model calls (successes, retried failures, template
// fallbacks) and the shutdown signal must hold nothing afterwards. The heap
// itself is measured by bench/memory-growth.ts, not here.
import t from 'tap'
import { build, bodyFor, stack } from '../helper.ts'
import { heldBy } from '../support/signals.ts'
import { postNarrative } from './helpers.ts'

/** The engine's process-long signal, private to it: what every generation would be attached to. */
const shutdownSignalOf = (engine: unknown): AbortSignal => (engine as { shutdown: AbortController }).shutdown.signal

t.test('after hundreds of model calls through the app, the shutdown signal holds no listener and no dependent signal', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, GENERATION_RATE_LIMIT: '0' } })
  const signal = shutdownSignalOf(app.engine)
  t.same(heldBy(signal), { listeners: 0, dependents: 0 }, 'nothing before')

  // 200 misses, each one model call, 8 at a time.
  const statuses: Array<string | undefined> = []
  for (let i = 0; i < 200; i += 8) {
    const results = await Promise.all(Array.from({ length: 8 }, (_, j) => postNarrative(app, bodyFor(i + j))))
    statuses.push(...results.map(r => r.status))
  }
  t.same(statuses.filter(status => status !== 'miss'), [], '200 misses')
  // 20 failed builds: two attempts each, then the template.
  s.openai.setMode('error500')
  for (let i = 200; i < 220; i++) t.equal((await postNarrative(app, bodyFor(i))).status, 'fallback')
  await app.engine.idle()
  t.equal(s.openai.calls, 200 + 2 * 20, 'every call reached the model')
  t.same(heldBy(signal), { listeners: 0, dependents: 0 }, 'nothing after 240 model calls')
})
