import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { build, bodyFor, stack } from './helper.ts'
import { freePort } from './support/ports.ts'
import { track } from './support/reaper.ts'
import { sleep, waitUntil } from './support/wait.ts'

const execFileP = promisify(execFile)
const OPS = fileURLToPath(new URL('../ops/', import.meta.url))
const PROMETHEUS_DIR = join(OPS, 'prometheus')

async function promtool (...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP('promtool', args, { cwd: PROMETHEUS_DIR, timeout: 30_000 })
    return stdout + stderr
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string, message: string }
    throw new Error(`promtool ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`)
  }
}

t.test('promtool: the alert rules and the Prometheus configuration are valid', async t => {
  t.match(await promtool('check', 'rules', 'alerts.yml'), /SUCCESS: 7 rules found/)
  const config = await promtool('check', 'config', 'prometheus.yml')
  t.match(config, /is valid prometheus config file syntax/)
  t.match(config, /SUCCESS: 1 rule files found/, 'the configuration loads alerts.yml')
})

t.test('promtool test rules: each alert fires on synthetic series, and only when it should', async t => {
  // Redis down (breaker never closed for 5 minutes), hit rate under 50% and 90%,
  // p95 of cached answers over 100 ms, refresh failures over 5%, memory over 80%,
  // a re-paid generation (the model paid twice for one narrative).
  const out = await promtool('test', 'rules', 'alerts.test.yml')
  t.match(out, /SUCCESS/)
  const tests = await readFile(join(PROMETHEUS_DIR, 'alerts.test.yml'), 'utf8')
  for (const alert of ['NarrativeRedisDown', 'NarrativeHitRateCritical', 'NarrativeHitRateLow', 'NarrativeLatencyP95High', 'NarrativeRefreshErrorRate', 'NarrativeMemoryHigh', 'NarrativeModelRepaid']) {
    t.match(tests, new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${alert} is shown firing`)
  }
})

interface PromResult { metric: Record<string, string>, value: [number, string] }

/** The dashboard's PromQL, with Grafana's variables given values Prometheus accepts. */
async function dashboardExpressions (): Promise<Array<{ panel: string, expr: string }>> {
  const dashboard = JSON.parse(await readFile(join(OPS, 'grafana/dashboards/narrative-cache.json'), 'utf8')) as { panels: Array<{ title: string, targets?: Array<{ expr: string }> }> }
  return dashboard.panels.flatMap(p => (p.targets ?? []).map(target => ({
    panel: p.title,
    expr: target.expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m').replaceAll('$__interval', '15s')
  })))
}

t.test('a real Prometheus scrapes GET /metrics with ops/prometheus/prometheus.yml, loads the alerts and answers the dashboard\'s queries', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const appPort = (app.server.address() as AddressInfo).port

  // The real configuration, pointed at this app and scraped every second.
  const dir = await mkdtemp(join(tmpdir(), 'nc-prometheus-'))
  const untrackDir = track('dir', dir)
  const original = await readFile(join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8')
  // The compose file's discovery (every api replica by DNS) becomes this one app.
  const discovery = /dns_sd_configs:\n\s+- names: \['api'\]\n\s+type: A\n\s+port: 3000\n\s+refresh_interval: 30s/
  t.match(original, discovery)
  const config = original
    .replace(discovery, `static_configs:\n      - targets: ['127.0.0.1:${appPort}']`)
    .replace('scrape_interval: 15s', 'scrape_interval: 1s')
    .replace('evaluation_interval: 15s', 'evaluation_interval: 1s')
  await writeFile(join(dir, 'prometheus.yml'), config)
  await copyFile(join(PROMETHEUS_DIR, 'alerts.yml'), join(dir, 'alerts.yml'))

  const promPort = await freePort()
  let output = ''
  const child = spawn('prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
    '--log.level=warn'
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', d => { output = (output + String(d)).slice(-8000) })
  child.stderr.on('data', d => { output = (output + String(d)).slice(-8000) })
  const untrackPid = track('pid', child.pid!)
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.teardown(async () => {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
    untrackPid()
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    untrackDir()
  })

  const api = `http://127.0.0.1:${promPort}/api/v1`
  const query = async (expr: string): Promise<{ status: string, error?: string, data?: { resultType: string, result: PromResult[] } }> => {
    const res = await fetch(`${api}/query?query=${encodeURIComponent(expr)}`)
    return await res.json() as { status: string, error?: string, data?: { resultType: string, result: PromResult[] } }
  }
  const values = async (expr: string): Promise<Map<string, number>> => {
    const body = await query(expr)
    return new Map((body.data?.result ?? []).map(r => [r.metric.status ?? '', Number(r.value[1])]))
  }
  const what = (w: string) => ({ timeoutMs: 20_000, intervalMs: 250, what: w, onTimeout: (e: unknown) => new Error(`timed out waiting for ${w}: ${String(e)}\nprometheus output:\n${output}`) })

  // Prometheus scrapes the app: `up` is 1, so the loopback scraper passes the /metrics allowlist.
  const up = (await waitUntil(async () => {
    const r = await query('up')
    return r.data?.result.find(x => x.metric.job === 'narrative-api' && x.value[1] === '1')
  }, what('the first successful scrape')))!
  t.equal(up.metric.instance, `127.0.0.1:${appPort}`)

  // A miss then hits; the counter Prometheus stores follows.
  const post = async () => (await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })).headers['x-cache']
  t.equal(await post(), 'MISS')
  t.equal(await post(), 'HIT')
  await waitUntil(async () => (await values('narrative_requests_total')).get('hit') === 1, what('hit = 1 in Prometheus'))
  t.equal(await post(), 'HIT')
  t.equal(await post(), 'HIT')
  const counted = (await waitUntil(async () => {
    const v = await values('narrative_requests_total{job="narrative-api"}')
    return v.get('hit') === 3 ? v : undefined
  }, what('hit = 3 in Prometheus')))!
  t.equal(counted.get('hit'), 3, 'three hits')
  t.equal(counted.get('miss'), 1, 'one miss')
  t.equal(counted.size, 2, 'no other status yet')
  const calls = await query('sum(narrative_model_calls_total)')
  t.equal(calls.data?.result[0]?.value[1], '1', 'one model call')

  // The alert rules are loaded and evaluate cleanly; none fires on a healthy app.
  const rules = (await waitUntil(async () => {
    const body = await (await fetch(`${api}/rules`)).json() as { data: { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string }> }> } }
    const all = body.data.groups.flatMap(g => g.rules)
    return all.length === 7 && all.every(r => r.health === 'ok') ? all : undefined
  }, what('the alert rules evaluated')))!
  t.same(rules.map(r => r.name).sort(), ['NarrativeHitRateCritical', 'NarrativeHitRateLow', 'NarrativeLatencyP95High', 'NarrativeMemoryHigh', 'NarrativeModelRepaid', 'NarrativeRedisDown', 'NarrativeRefreshErrorRate'])
  const alerts = await (await fetch(`${api}/alerts`)).json() as { data: { alerts: unknown[] } }
  t.same(alerts.data.alerts, [], 'no alert pending or firing')

  // Every query of the Grafana dashboard is valid PromQL for this Prometheus.
  await sleep(1000) // one more scrape, so rates over the new hits have two samples
  for (const { panel, expr } of await dashboardExpressions()) {
    const r = await query(expr)
    t.equal(r.status, 'success', `${panel}: ${expr}${r.error !== undefined ? ` (${r.error})` : ''}`)
  }
  const hitRate = await query('sum(rate(narrative_requests_total{status=~"hit|stale|durable"}[1m])) / sum(rate(narrative_requests_total{status=~"hit|stale|durable|miss|fallback"}[1m]))')
  const ratio = Number(hitRate.data?.result[0]?.value[1])
  t.ok(ratio > 0 && ratio <= 1, `the dashboard's hit rate has a value (${ratio})`)
})
