// Proxy trust: what a client writes in X-Forwarded-For must never become its
// address. With `trustProxy: true` the left-most entry won, so
// `X-Forwarded-For: 127.0.0.1, <real address>` reached the admin routes and
// /metrics, and rotating that entry made 320 of 320 misses without a 429.
// TRUST_PROXY now names the proxies (IPs/CIDRs) or a hop count; `true` and
// any other word are refused at start-up. Behind a named proxy the client is
// the right-most address the proxies did not vouch for.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from '../helper.ts'
import { mintAdminToken } from '../../src/admin/token.ts'
import { ConfigError, loadConfig } from '../../src/config.ts'

const SECRET = 'proxy-trust-suite-secret-long-enough-0000'
const PROXY = '10.0.0.5'
const CLIENT = '203.0.113.9'

const adminRoutes = [
  { method: 'GET' as const, url: '/api/narrative/stats' },
  { method: 'DELETE' as const, url: '/api/narrative/cache?pattern=nothing*' },
  { method: 'GET' as const, url: '/metrics' }
]

async function status (app: FastifyInstance, route: { method: 'GET' | 'DELETE', url: string }, remoteAddress: string, forwardedFor: string): Promise<number> {
  const token = mintAdminToken(SECRET, 'alice', 600)
  const res = await app.inject({ ...route, remoteAddress, headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': forwardedFor } })
  return res.statusCode
}

t.test('TRUST_PROXY=true (or on, yes, any word that is not an IP) is refused at start-up with one line saying what to write', async t => {
  for (const value of ['true', 'TRUE', 'on', 'yes', 'Yes', 'loopback', 'uniquelocal', 'proxy', '10.0.0.5,true', '10.0.0.300', '10.0.0.0/33', '*', ',']) {
    let message = ''
    try { loadConfig({ TRUST_PROXY: value }) } catch (err) {
      t.ok(err instanceof ConfigError, `${value}: a ConfigError`)
      message = (err as Error).message
    }
    t.match(message, /^Invalid configuration: TRUST_PROXY must be off, a hop count, or the proxies' IPs\/CIDRs \(comma-separated\)/, `${JSON.stringify(value)}: refused (${message})`)
    t.notMatch(message, /\n/, 'one line')
    if (value !== ',') t.match(message, /write the balancer's address, e\.g\. TRUST_PROXY=10\.0\.0\.5/, 'says what to write instead')
  }
  t.throws(() => loadConfig({ TRUST_PROXY: 'true' }), /`true` would trust any client's X-Forwarded-For/)
  t.throws(() => loadConfig({ TRUST_PROXY: 'yes' }), /`yes` would trust any client's X-Forwarded-For/)
  t.throws(() => loadConfig({ TRUST_PROXY: 'loopback' }), /"loopback" is not an IP address or CIDR/)
  t.throws(() => loadConfig({ TRUST_PROXY: '11' }), /a hop count is at most 10/)

  t.same(loadConfig({ TRUST_PROXY: '10.0.0.5, 10.1.0.0/16,::1' }).trustProxy, { proxies: ['10.0.0.5', '10.1.0.0/16', '::1'] })
  t.same(loadConfig({ TRUST_PROXY: '2' }).trustProxy, { hops: 2 })
  for (const off of ['off', 'false', 'no', '0', '']) t.equal(loadConfig({ TRUST_PROXY: off }).trustProxy, false, `${JSON.stringify(off)} is off`)

  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], { env: { ...process.env, TRUST_PROXY: 'true', LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 30_000 })
  t.equal(run.status, 1, 'the server exits 1')
  t.match(run.stderr.trim(), /^Invalid configuration: TRUST_PROXY must be [^\n]+TRUST_PROXY=10\.0\.0\.5$/, 'with that one line')
})

t.test('behind a named proxy, a spoofed left-most X-Forwarded-For reaches neither the admin routes nor /metrics', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, TRUST_PROXY: `${PROXY},10.9.0.0/16` } }) // allowlist 127.0.0.1,::1
  for (const route of adminRoutes) {
    const what = `${route.method} ${route.url.split('?')[0]}`
    t.equal(await status(app, route, PROXY, `127.0.0.1, ${CLIENT}`), 403, `${what}: "127.0.0.1, <real address>" from the proxy: 403`)
    t.equal(await status(app, route, PROXY, `::1, ${CLIENT}`), 403, `${what}: "::1, <real address>": 403`)
    t.equal(await status(app, route, PROXY, `127.0.0.1, 127.0.0.1, ${CLIENT}`), 403, `${what}: loopback written twice: 403`)
    t.equal(await status(app, route, `::ffff:${PROXY}`, `127.0.0.1, ${CLIENT}`), 403, `${what}: the proxy as an IPv4-mapped address: still 403`)
    t.equal(await status(app, route, '10.9.3.4', `127.0.0.1, ${CLIENT}, 10.9.0.1`), 403, `${what}: two proxies of the CIDR in a row: the client is still the real one`)
    t.equal(await status(app, route, CLIENT, '127.0.0.1'), 403, `${what}: a client that is not a proxy cannot claim loopback`)
    // The proxy's own word is taken: a loopback client behind it is let in.
    t.equal(await status(app, route, PROXY, '127.0.0.1'), 200, `${what}: a loopback client behind the proxy: 200`)
    t.equal(await status(app, route, `::ffff:${PROXY}`, '::1'), 200, `${what}: the same through an IPv4-mapped socket address: 200`)
  }
})

t.test('behind a named proxy, rotating the left-most X-Forwarded-For evades neither the generation limit nor the admin limit', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, TRUST_PROXY: PROXY, GENERATION_RATE_LIMIT: '5' } })
  const codes: number[] = []
  for (let i = 0; i < 12; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(700 + i), remoteAddress: PROXY, headers: { 'x-forwarded-for': `198.51.100.${i}, ${CLIENT}` } })
    codes.push(res.statusCode)
  }
  t.same(codes, [...Array(5).fill(200), ...Array(7).fill(429)], 'five new narratives, then 429 whatever the left-most entry says')
  t.equal(s.openai.calls, 5, 'the refused ones cost no model call')
  const other = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(799), remoteAddress: PROXY, headers: { 'x-forwarded-for': '192.0.2.44' } })
  t.equal(other.statusCode, 200, 'another client behind the same proxy has its own count')

  const admin: number[] = []
  for (let i = 0; i < 24; i++) admin.push(await status(app, adminRoutes[0], PROXY, `198.51.100.${i}, ${CLIENT}`))
  t.same(admin, [...Array(20).fill(403), ...Array(4).fill(429)], 'the admin limit (20 per 2 s) counts the real client')
})

t.test('a hop count: the right-most entry is the client, whatever is written to its left', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, TRUST_PROXY: '1', GENERATION_RATE_LIMIT: '3' } })
  t.equal(await status(app, adminRoutes[0], PROXY, `127.0.0.1, ${CLIENT}`), 403, 'a spoofed left-most loopback: 403')
  t.equal(await status(app, adminRoutes[2], PROXY, `127.0.0.1, ${CLIENT}`), 403, '/metrics too')
  t.equal(await status(app, adminRoutes[0], PROXY, '127.0.0.1'), 200, 'the one proxy vouching for a loopback client: 200')
  const codes: number[] = []
  for (let i = 0; i < 6; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(800 + i), remoteAddress: PROXY, headers: { 'x-forwarded-for': `198.51.100.${i}, ${CLIENT}` } })
    codes.push(res.statusCode)
  }
  t.same(codes, [200, 200, 200, 429, 429, 429], 'three new narratives, then 429')
})
