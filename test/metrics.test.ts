import t from 'tap'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { build, bodyFor, stack } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { waitUntil } from './support/wait.ts'
import { mintAdminToken } from '../src/admin/token.ts'

function metricValue (text: string, name: string, labels = ''): number {
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? NaN : Number(line.split(' ')[1])
}

t.test('GET /metrics: the design\'s metrics, with figures that follow the requests', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  await app.inject({ method: 'POST', url: '/api/narrative', payload: { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } } })
  // The build's entry is written to the store off the answer's path (its size is
  // observed then): wait for that write rather than race it.
  await waitUntil(async () => metricValue((await app.inject('/metrics')).body, 'narrative_value_size_bytes_count') === 1, { timeoutMs: 5000, what: 'the built entry written to the store' })
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  const text = res.body
  t.equal(metricValue(text, 'narrative_requests_total', '{status="miss"}'), 1)
  t.equal(metricValue(text, 'narrative_requests_total', '{status="hit"}'), 2)
  t.equal(metricValue(text, 'narrative_requests_total', '{status="error"}'), 1)
  t.equal(metricValue(text, 'narrative_model_calls_total', '{engine="gpt-4o",reason="request"}'), 1)
  t.ok(metricValue(text, 'narrative_tokens_total', '{model="gpt-4o",kind="prompt"}') > 0)
  t.ok(metricValue(text, 'narrative_estimated_cost_usd_total', '{model="gpt-4o"}') > 0)
  t.ok(metricValue(text, 'narrative_estimated_saving_usd_total') > 0, 'two hits saved two calls')
  t.equal(metricValue(text, 'narrative_http_request_duration_seconds_count', '{route="/api/narrative",status="hit"}'), 2)
  t.equal(metricValue(text, 'narrative_breaker_state', '{breaker="redis"}'), 0)
  t.equal(metricValue(text, 'narrative_value_size_bytes_count'), 1)
  for (const name of ['narrative_refresh_started_total', 'narrative_refresh_skipped_locked_total', 'narrative_refresh_succeeded_total', 'narrative_refresh_failed_total',
    'narrative_locks_in_flight', 'narrative_redis_errors_total', 'narrative_redis_timeouts_total', 'narrative_analytics_dropped_total', 'narrative_generation_duration_seconds_count', 'process_cpu_seconds_total']) {
    t.ok(text.includes(`\n${name}`), `${name} is exposed`)
  }
  const outside = await app.inject({ url: '/metrics', remoteAddress: '203.0.113.5' })
  t.equal(outside.statusCode, 403, 'allowlisted like the admin routes')
})

t.test('one log line per request, with id, route, cache status, key hash and duration; no token, no userId', async t => {
  const s = await stack(t)
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk, _enc, cb) { for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l)); cb() } })
  const config = loadConfig({ ...s.env, JWT_SECRET: 'a-secret-that-must-never-be-logged-000000', DATABASE_URL: await uniqueDatabaseUrl(t), LOG_LEVEL: 'info' })
  const server = Fastify(serverOptions(config, { level: 'info', stream: sink }))
  await server.register(fp(app), { config })
  t.teardown(() => server.close())
  await server.ready()
  const token = mintAdminToken(config.jwtSecret!, 'alice', 600)
  await server.inject({ method: 'POST', url: '/api/narrative', payload: { ...bodyFor(3), userId: 'secret-user-42' } })
  await server.inject({ method: 'GET', url: '/api/narrative/stats', headers: { authorization: `Bearer ${token}` } })
  const requestLines = lines.filter(l => l.msg === 'request')
  t.equal(requestLines.length, 2, 'one line per request')
  t.match(requestLines[0], { reqId: String, route: 'POST /api/narrative', statusCode: 200, cache: 'miss', keyHash: /^[0-9a-f]{12}$/, ms: Number })
  const all = JSON.stringify(lines)
  t.notMatch(all, /secret-user-42/, 'no userId in logs')
  t.notMatch(all, new RegExp(token.split('.')[2]), 'no token in logs')
  t.notMatch(all, /a-secret-that-must-never-be-logged/, 'no JWT secret in logs')
  t.notMatch(all, /sk-test-not-a-real-key/, 'no API key in logs')
})
