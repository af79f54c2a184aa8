// src/hot-metrics.ts: the hit path's counter and histogram must be exposed
// exactly as prom-client's own would be for the same calls, alone and summed
// across workers.
import t from 'tap'
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
import { HotCounter, HotHistogram } from '../src/hot-metrics.ts'

const buckets = [0.001, 0.01, 0.1, 1]
const observations: Array<[string, string, number]> = [['/a', 'hit', 0.0004], ['/a', 'hit', 0.001], ['/a', 'hit', 0.05], ['/a', 'miss', 2.5], ['/b', 'hit', 0.2], ['/a', 'hit', 0.0099]]

function pair (): { ours: Registry, theirs: Registry, hot: { h: HotHistogram, c: HotCounter, plain: HotCounter }, prom: { h: Histogram, c: Counter, plain: Counter } } {
  const ours = new Registry()
  const theirs = new Registry()
  const spec = { name: 'x_seconds', help: 'latency', labelNames: ['route', 'status'] as const, buckets }
  const counter = { name: 'x_total', help: 'answers', labelNames: ['status'] as const }
  const plain = { name: 'y_total', help: 'saved' }
  return {
    ours,
    theirs,
    hot: { h: new HotHistogram({ ...spec, registers: [ours] }), c: new HotCounter({ ...counter, registers: [ours] }), plain: new HotCounter({ ...plain, registers: [ours] }) },
    prom: { h: new Histogram({ ...spec, registers: [theirs] }), c: new Counter({ ...counter, registers: [theirs] }), plain: new Counter({ ...plain, registers: [theirs] }) }
  }
}

function feed (p: ReturnType<typeof pair>, list = observations): void {
  for (const [route, status, seconds] of list) {
    p.hot.h.labels(route, status).observe(seconds)
    p.prom.h.labels(route, status).observe(seconds)
    p.hot.c.labels(status).inc()
    p.prom.c.labels(status).inc()
    p.hot.plain.inc(seconds)
    p.prom.plain.inc(seconds)
  }
}

t.test('the exposition text is prom-client\'s, line for line', async t => {
  const p = pair()
  feed(p)
  t.equal(await p.ours.metrics(), await p.theirs.metrics())
  p.ours.resetMetrics()
  p.theirs.resetMetrics()
  t.equal(await p.ours.metrics(), await p.theirs.metrics(), 'after a reset')
})

t.test('summed across workers as prom-client sums its own', async t => {
  const a = pair()
  const b = pair()
  feed(a, observations.slice(0, 3))
  feed(b, observations.slice(3))
  const ours = AggregatorRegistry.aggregate([await a.ours.getMetricsAsJSON(), await b.ours.getMetricsAsJSON()])
  const theirs = AggregatorRegistry.aggregate([await a.theirs.getMetricsAsJSON(), await b.theirs.getMetricsAsJSON()])
  t.equal(await ours.metrics(), await theirs.metrics())
})

t.test('wrong label counts and values that are not finite are refused, as prom-client refuses them', async t => {
  const { hot } = pair()
  t.throws(() => hot.h.labels('/a'), /takes 2 label value/)
  t.throws(() => hot.h.labels('/a', 'hit').observe(Number.NaN), /finite/)
  t.throws(() => hot.c.labels('hit').inc(-1), /goes up/)
  // Also once a series with that first value exists (the lookup is one level per label).
  hot.h.labels('/a', 'hit').observe(0.5)
  t.throws(() => hot.h.labels('/a'), /takes 2 label value/)
  t.throws(() => hot.h.labels('/a', 'hit', 'x'), /takes 2 label value/)
  t.equal(hot.h.labels('/a', 'hit').count, 1, 'the same series for the same values')
  t.not(hot.h.labels('/a', 'miss'), hot.h.labels('/a', 'hit'))
})

t.test('a series made after a reset is exposed, and the old ones are not', async t => {
  const p = pair()
  feed(p)
  p.ours.resetMetrics()
  p.theirs.resetMetrics()
  feed(p, observations.slice(2, 4))
  t.equal(await p.ours.metrics(), await p.theirs.metrics())
})
