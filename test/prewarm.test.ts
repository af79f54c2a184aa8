import t from 'tap'
import { build, bodyFor, stack } from './helper.ts'
import { prewarm } from '../src/narrative/prewarm.ts'

const DAY = 86_400_000

t.test('prewarm builds missing entries with bounded concurrency, skips fresh ones, refreshes stale ones', async t => {
  const s = await stack(t)
  s.openai.setLatency(100)
  let offset = 0
  const app = await build(t, { env: s.env, cache: { clock: () => Date.now() + offset } })
  const jobs = Array.from({ length: 12 }, (_, i) => app.narratives.keyOf(bodyFor(i) as never))
  // Two are already cached.
  await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(0) })
  await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(s.openai.calls, 2)

  let peak = 0
  const watch = setInterval(() => { peak = Math.max(peak, s.openai.inFlight) }, 5)
  const result = await prewarm(app.narratives, jobs, 3)
  clearInterval(watch)
  t.same(result, { warmed: 10, skipped: 2, failed: 0 })
  t.equal(s.openai.calls, 12)
  t.ok(peak <= 3, `at most 3 model calls at once (saw ${peak})`)
  for (let i = 0; i < 12; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(i) })
    t.equal(res.json().cache.status, 'hit')
  }

  offset = 8 * DAY
  const again = await prewarm(app.narratives, jobs.slice(0, 4), 2)
  t.same(again, { warmed: 4, skipped: 0, failed: 0 }, 'stale entries are refreshed')
  t.equal(s.openai.calls, 16)

  s.openai.setMode('error500')
  const failing = await prewarm(app.narratives, [app.narratives.keyOf(bodyFor(99) as never)], 1)
  t.same(failing, { warmed: 0, skipped: 0, failed: 1 }, 'a template stand-in is a failure, not a warm entry')
})
