// Event-loop stalls caused by what the model writes. Every streamed piece of
// a reply used to re-parse the whole reply so far (quadratic in its length):
// a 64,000-character reply in 4-character pieces blocked the process for
// 8.7 s, and one over the limit was read to its end, refused, not cached, and
// paid for again by the next request. Here the process's event-loop delay is
// measured (node:perf_hooks monitorEventLoopDelay) while such replies stream
// in from the fake model over real HTTP: no turn of the loop may take 100 ms.
// A reply past the narrative's limits is cut off there (the stream aborted,
// the template answering, the cut counted); a long valid one streams with its
// deltas adding up to exactly the stored text.
//
// The fake model and the HTTP client run in this process too, on a machine
// that may be shared: the operating system can hold the whole process back
// for 100 ms and more now and then (seen here at a load of 10 on 2 cores),
// whatever it runs. So the bound is on what the process did: next to
// monitorEventLoopDelay (whose longest delay is printed), a 5 ms interval
// timer measures each wait between its ticks in wall time and in the
// process's CPU time (process.cpuUsage), and a stall is a wait during which
// the process was busy: the smaller of the two. The old parser's stalls were
// seconds of CPU. A scenario is measured up to three times, each on new keys,
// and passes when one run stays under the bound; every run's figures are printed.
import t, { type Test } from 'tap'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack, type Stack } from '../helper.ts'
import { postSse } from '../support/sse-client.ts'
import { narrativeText } from '../../src/domain/narrative-text.ts'
import { NARRATIVE_LIMITS } from '../../src/domain/narrative.ts'
import { postNarrative, redisClient } from './helpers.ts'

const STALL_MS = 100
const RUNS = 3
const TICK_MS = 5

interface Measure {
  /** The longest wait between ticks during which the process was running (ms): the smaller of wall and CPU time. */
  busyMs: number
  /** monitorEventLoopDelay's longest delay (ms), time the process was held back included. */
  delayMs: number
}

/** Monitors the event loop until stop() (see the header: busy time next to monitorEventLoopDelay). */
function monitor (): { stop: () => Measure } {
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  let busyMs = 0
  let wall = performance.now()
  let cpu = process.cpuUsage()
  const tick = (): void => {
    const nowWall = performance.now()
    const cpuMs = (({ user, system }) => (user + system) / 1000)(process.cpuUsage(cpu))
    busyMs = Math.max(busyMs, Math.min(nowWall - wall, cpuMs))
    wall = nowWall
    cpu = process.cpuUsage()
  }
  // Unref'd: a run that throws leaves nothing to keep the process alive.
  const timer = setInterval(tick, TICK_MS).unref()
  return {
    stop () {
      tick()
      clearInterval(timer)
      histogram.disable()
      return { busyMs, delayMs: histogram.max / 1e6 }
    }
  }
}

/**
 * Runs `work(run)` under the monitor, again while the process was busy for
 * STALL_MS at a stretch, at most RUNS times. Returns every run's result and
 * measure; the test asserts on the best run.
 */
async function measured<T> (t: Test, work: (run: number) => Promise<T>): Promise<Array<{ result: T } & Measure>> {
  const runs: Array<{ result: T } & Measure> = []
  for (let run = 0; run < RUNS; run++) {
    const m = monitor()
    const result = await work(run)
    runs.push({ result, ...m.stop() })
    if (runs[run].busyMs < STALL_MS) break
  }
  t.comment(`each run, the longest stretch the process was busy, and monitorEventLoopDelay's longest delay: ${runs.map(r => `${r.busyMs.toFixed(1)} ms (${r.delayMs.toFixed(1)} ms)`).join(', ')}`)
  return runs
}

const urlOf = (app: FastifyInstance): string => `http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/narrative`

/**
 * A first long stream of each kind (JSON and SSE), outside the measure: a
 * fresh process compiles and optimizes the code of its first answers as it
 * runs it, and that is not what is measured here.
 */
async function warmUp (app: FastifyInstance, s: Stack, n: number): Promise<void> {
  s.openai.setStream({ pieceChars: 4, delayMs: 0 })
  s.openai.setReply(() => ({ summary: 'Warming up. '.repeat(1000), bullets: ['one', 'two'] }))
  await postNarrative(app, bodyFor(n))
  await postSse(urlOf(app), bodyFor(n + 1))
  s.openai.reset()
}

const metric = async (app: FastifyInstance, name: string): Promise<number> =>
  Number(new RegExp(`^${name} (\\S+)$`, 'm').exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1])

t.test('a 64,000-character reply in 4-character pieces: no stall, cut off at the limit, not retried, the template answers, counted, nothing cached', async t => {
  const s = await stack(t)
  const summary = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(1200).slice(0, 64_000)
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '20000' }, listen: true })
  await warmUp(app, s, 100)
  s.openai.setStream({ pieceChars: 4, delayMs: 0 })
  s.openai.setReply(() => ({ summary, bullets: [] }))

  // Each run: one JSON request, then one SSE request, on keys of their own.
  const runs = await measured(t, async run => [await postNarrative(app, bodyFor(2 * run)), await postSse(urlOf(app), bodyFor(2 * run + 1))] as const)
  const best = Math.min(...runs.map(r => r.busyMs))
  t.ok(best < STALL_MS, `no turn of the event loop kept the process busy for ${STALL_MS} ms (longest: ${best.toFixed(1)} ms)`)
  for (const { result: [plain, streamed] } of runs) {
    t.equal(plain.status, 'fallback', 'JSON: the template answers')
    t.equal(JSON.parse(plain.body).engine, 'template')
    t.equal(streamed.events[streamed.events.length - 1].event, 'error', 'SSE: the model text shown so far is followed by an error event')
    t.ok(streamed.text.length > 0 && streamed.text.length <= NARRATIVE_LIMITS.summaryChars, `it showed no more than the limit (${streamed.text.length} characters)`)
  }
  t.equal(s.openai.calls, 2 * runs.length, 'one call a request: a reply cut at the limit is not retried')
  t.equal(await metric(app, 'narrative_model_replies_cut_total'), 2 * runs.length, 'every cut counted')
  t.match(s.openai.requests[0].body, { max_tokens: NARRATIVE_LIMITS.replyTokens }, 'the model was told the limit (max_tokens)')
  await app.engine.idle()
  const redis = redisClient(t, s.redisUrl)
  const keys = runs.flatMap((_, run) => [2 * run, 2 * run + 1]).map(n => app.narratives.keyOf(bodyFor(n) as never).key)
  t.equal(await redis.exists(...keys), 0, 'nothing cached')
})

t.test('the stream is aborted at the limit, not read to its end', async t => {
  const s = await stack(t)
  // 300 pieces of 100 characters, 2 ms apart: the limit (20,000) falls about two thirds in.
  s.openai.setStream({ pieceChars: 100, delayMs: 2 })
  s.openai.setReply(() => ({ summary: 'x'.repeat(30_000), bullets: [] }))
  const app = await build(t, { env: s.env })
  t.equal((await postNarrative(app, bodyFor(3))).status, 'fallback')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(s.openai.abandoned, 1, 'the model\'s response was closed before it was fully written')
  t.equal(s.openai.completed, 0)
})

t.test('a long valid reply (40,000 characters of text in 4-character pieces) streams with no stall; its deltas add up to exactly the stored text', async t => {
  const s = await stack(t)
  const { summaryChars, bullets, bulletChars } = NARRATIVE_LIMITS
  const line = (n: number, seed: string): string => `${seed} “quoted” \\ é 😀 and\nmore. `.repeat(Math.ceil(n / 20)).slice(0, n - 2) + '.'
  const reply = { summary: line(summaryChars - 1, 'Summary'), bullets: Array.from({ length: bullets }, (_, i) => line(bulletChars - 1, `Point ${i}`)) }
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '20000' }, listen: true })
  await warmUp(app, s, 100)
  s.openai.setStream({ pieceChars: 4, delayMs: 0 })
  s.openai.setReply(() => reply)

  const runs = await measured(t, async run => await postSse(urlOf(app), bodyFor(run)))
  const best = Math.min(...runs.map(r => r.busyMs))
  t.ok(best < STALL_MS, `no turn of the event loop kept the process busy for ${STALL_MS} ms (longest: ${best.toFixed(1)} ms)`)
  await app.engine.idle()
  for (const [run, { result: streamed }] of runs.entries()) {
    const done = streamed.events[streamed.events.length - 1]
    t.equal(done.event, 'done')
    t.match(done.data, { cache: { status: 'miss' } })
    t.ok(streamed.events.filter(e => e.event === 'delta').length > 1000, 'the text arrived as it was written')
    t.equal(streamed.text, narrativeText(reply), 'the deltas add up to exactly the model\'s text')
    const hit = await postNarrative(app, bodyFor(run))
    t.equal(hit.status, 'hit')
    t.equal(narrativeText(JSON.parse(hit.body).narrative), streamed.text, 'and to the stored text')
  }
  t.equal(s.openai.calls, runs.length)
})
