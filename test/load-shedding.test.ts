// Load shedding (plugins/load-shedding.ts, @fastify/under-pressure): past the
// event-loop delay threshold, requests are refused at once with a 503 and
// Retry-After; /health, /ready and /metrics still answer, /ready saying
// `overloaded`; once the loop is back, requests are served again.
import t from 'tap'
import { build, exampleBody, stack } from './helper.ts'
import { loadConfig } from '../src/config.ts'
import { waitUntil } from './support/wait.ts'

function block (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* the event loop is stuck */ }
}

t.test('the thresholds: 1000 ms of event-loop delay by default in production (off in development); heap and RSS off; 0 turns the delay off; nonsense is refused', async t => {
  t.same(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) }).shed, { eventLoopDelayMs: 1000, heapUsedBytes: 0, rssBytes: 0 })
  t.same(loadConfig({}).shed, { eventLoopDelayMs: 0, heapUsedBytes: 0, rssBytes: 0 })
  t.same(loadConfig({ SHED_EVENT_LOOP_DELAY_MS: '0', SHED_HEAP_USED_MB: '512', SHED_RSS_MB: '1024' }).shed, { eventLoopDelayMs: 0, heapUsedBytes: 512 * 1024 * 1024, rssBytes: 1024 * 1024 * 1024 })
  t.throws(() => loadConfig({ SHED_EVENT_LOOP_DELAY_MS: '5' }), /SHED_EVENT_LOOP_DELAY_MS/)
})

t.test('an event loop stuck past the threshold: 503 NARR_OVERLOADED with Retry-After; health, ready (overloaded) and metrics answer; then served again', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, SHED_EVENT_LOOP_DELAY_MS: '50' }, loadShedding: { sampleIntervalMs: 50 } })
  const post = () => app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  // Booting kept the loop busy: the first samples may already say so.
  await waitUntil(() => !app.isUnderPressure(), { timeoutMs: 5000, what: 'the boot\'s pressure to pass' })
  t.equal((await post()).statusCode, 200, 'served while the loop is free')
  // The loop stuck for 100 ms out of every 110: each sample sees a mean delay far above 50 ms.
  const stuck = setInterval(() => { block(100) }, 110)
  t.teardown(() => { clearInterval(stuck) })
  await waitUntil(() => app.isUnderPressure(), { timeoutMs: 5000, what: 'the pressure' })
  const shed = await post()
  t.equal(shed.statusCode, 503)
  t.equal(shed.headers['retry-after'], '10')
  t.match(shed.json(), { statusCode: 503, code: 'NARR_OVERLOADED', error: 'Service Unavailable', message: /overloaded; try again in 10 s/ })
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, '/health still answers 200')
  // The pressure is a sample of a moving figure, and the stuck loop lets a
  // sample now and then pass under the threshold: /ready is asked until it
  // answers while a sample says overloaded.
  let ready = await app.inject({ method: 'GET', url: '/ready' })
  await waitUntil(async () => {
    ready = await app.inject({ method: 'GET', url: '/ready' })
    return ready.statusCode === 503
  }, { timeoutMs: 5000, what: '/ready to say overloaded' })
  t.equal(ready.statusCode, 503, '/ready says 503')
  t.equal(ready.json().status, 'overloaded')
  t.equal(ready.headers['retry-after'], '10')
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200, '/metrics still answers')
  clearInterval(stuck)
  await waitUntil(() => !app.isUnderPressure(), { timeoutMs: 5000, what: 'the pressure to pass' })
  t.equal((await post()).statusCode, 200, 'served again once the loop is free')
  t.equal((await app.inject({ method: 'GET', url: '/ready' })).statusCode, 200)
})
