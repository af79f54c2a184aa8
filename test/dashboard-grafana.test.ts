import t from 'tap'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { build, bodyFor, stack } from './helper.ts'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const read = (path: string) => readFile(ROOT + path, 'utf8')

interface Target { expr?: string, refId?: string, datasource?: { type: string, uid: string } }
interface Panel {
  id: number
  type: string
  title: string
  gridPos: { x: number, y: number, w: number, h: number }
  datasource?: { type: string, uid: string }
  targets?: Target[]
  options?: { content?: string }
}

/** PromQL words that are not metric names. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'inf', 'nan'])

/**
 * The metric names a PromQL expression reads: what is left once strings, label
 * matchers, ranges, grouping clauses, numbers and function calls are taken out.
 */
function metricNames (expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // string literals
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges, subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
    .replace(/\boffset\s+\S+/g, ' ')
    .replace(/\b\d+(\.\d+)?(e[+-]?\d+)?\b/gi, ' ') // numbers
  const names = new Set<string>()
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice((m.index ?? 0) + m[0].length)
    if (/^\s*\(/.test(rest)) continue // a function or an aggregation
    if (KEYWORDS.has(m[0].toLowerCase())) continue
    names.add(m[0])
  }
  return [...names]
}

/** Every series name a /metrics answer exposes (histograms: _bucket, _sum, _count). */
function exposedNames (text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line)
    if (type !== null) {
      names.add(type[1])
      if (type[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(type[1] + s)
      if (type[2] === 'summary') for (const s of ['_sum', '_count']) names.add(type[1] + s)
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line)
    if (sample !== null) names.add(sample[1])
  }
  return names
}

t.test('metricNames() finds the metric names of PromQL and nothing else', async t => {
  t.same(metricNames('sum by (le) (rate(a_bucket{route="/x",status=~"hit|stale"}[$__rate_interval]))'), ['a_bucket'])
  t.same(metricNames('(sum(rate(b_total[5m])) or vector(0)) * 3600 + histogram_quantile(0.95, sum by (le, engine) (rate(c_bucket[1m])))'), ['b_total', 'c_bucket'])
  t.same(metricNames('x / on (job) group_left y > 1e3 and z offset 5m unless w'), ['x', 'y', 'z', 'w'])
})

t.test('the Grafana dashboard: valid, every panel queries the provisioned Prometheus for metrics the server really exposes', async t => {
  const dashboard = JSON.parse(await read('ops/grafana/dashboards/narrative-cache.json')) as { uid: string, title: string, schemaVersion: number, panels: Panel[] }
  t.equal(dashboard.uid, 'narrative-cache')
  t.ok(dashboard.schemaVersion >= 36, 'a current dashboard schema')
  t.notOk('id' in dashboard && (dashboard as { id?: unknown }).id !== null, 'no database id: provisioning assigns it')

  // The data source the dashboard names is the provisioned one.
  const datasource = await read('ops/grafana/provisioning/datasources/prometheus.yml')
  t.match(datasource, /uid: prometheus\n/)
  t.match(datasource, /type: prometheus\n/)
  t.match(datasource, /url: http:\/\/prometheus:9090\n/, 'the compose service')
  const provider = await read('ops/grafana/provisioning/dashboards/dashboards.yml')
  const path = /path: (\S+)/.exec(provider)?.[1]
  const compose = await read('docker-compose.yml')
  t.ok(compose.includes(`./ops/grafana/dashboards:${path}:ro`), 'docker-compose.yml mounts the dashboards where the provider reads them')
  t.ok(compose.includes('./ops/grafana/provisioning:/etc/grafana/provisioning:ro'))
  t.ok(compose.includes('./ops/prometheus:/etc/prometheus:ro'))
  for (const dir of ['ops/grafana/dashboards', 'ops/grafana/provisioning', 'ops/prometheus']) t.ok(existsSync(ROOT + dir), `${dir} exists`)

  // What the server exposes, from a real scrape after real traffic (labelled series appear on first use).
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  for (const n of [1, 1, 1, 2]) t.equal((await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(n) })).statusCode, 200)
  const scrape = await app.inject('/metrics')
  t.equal(scrape.statusCode, 200)
  const exposed = exposedNames(scrape.body)
  t.ok(exposed.has('narrative_requests_total') && exposed.has('process_resident_memory_bytes'), 'our metrics and prom-client\'s defaults')

  const ids = new Set<number>()
  const used = new Set<string>()
  const queryPanels = dashboard.panels.filter(p => p.type !== 'row' && p.type !== 'text')
  t.ok(queryPanels.length >= 10, `${queryPanels.length} panels with queries`)
  for (const panel of dashboard.panels) {
    t.notOk(ids.has(panel.id), `panel id ${panel.id} is unique`)
    ids.add(panel.id)
    t.ok(panel.gridPos.x + panel.gridPos.w <= 24, `${panel.title} fits the 24-column grid`)
  }
  for (const panel of queryPanels) {
    t.same(panel.datasource, { type: 'prometheus', uid: 'prometheus' }, `${panel.title}: the provisioned data source`)
    t.ok((panel.targets ?? []).length > 0, `${panel.title}: has a target`)
    const refIds = new Set<string>()
    for (const target of panel.targets ?? []) {
      t.type(target.expr, 'string', `${panel.title}: a PromQL expression`)
      t.notOk(refIds.has(target.refId!), `${panel.title}: refId ${target.refId} is unique`)
      refIds.add(target.refId!)
      const names = metricNames(target.expr!)
      t.ok(names.length > 0, `${panel.title}: reads a metric`)
      for (const name of names) {
        used.add(name)
        t.ok(exposed.has(name), `${panel.title}: ${name} is exposed at /metrics`)
      }
    }
  }
  // The design's dashboards: hit rate, latency percentiles, memory and value sizes, model calls, cost.
  for (const name of ['narrative_requests_total', 'narrative_http_request_duration_seconds_bucket', 'process_resident_memory_bytes',
    'narrative_value_size_bytes_bucket', 'narrative_model_calls_total', 'narrative_estimated_cost_usd_total', 'narrative_estimated_saving_usd_total', 'narrative_breaker_state']) {
    t.ok(used.has(name), `the dashboard shows ${name}`)
  }
  const exprs = queryPanels.flatMap(p => (p.targets ?? []).map(x => x.expr!))
  for (const q of ['0.50', '0.95', '0.99']) {
    t.ok(exprs.some(e => e.startsWith(`histogram_quantile(${q}, sum by (le) (rate(narrative_http_request_duration_seconds_bucket`)), `latency p${Number(q) * 100}`)
  }

  // Top systems have no Prometheus metric (no per-system label: unbounded cardinality): the text panel says where they are.
  const text = dashboard.panels.filter(p => p.type === 'text')
  t.equal(text.length, 1)
  t.equal(text[0].title, 'Top star systems')
  t.match(text[0].options?.content, /\/admin/)
  t.match(text[0].options?.content, /\/api\/narrative\/analytics/)
})
