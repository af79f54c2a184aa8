import t from 'tap'
import { createHmac } from 'node:crypto'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const b64 = (value: object | string): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')

/** A hand-made JWT, so tests can forge what fast-jwt's signer would refuse to make. */
function forge (header: object, payload: object, secret: string | null): string {
  const head = `${b64(header)}.${b64(payload)}`
  const signature = secret === null ? '' : createHmac('sha256', secret).update(head).digest('base64url')
  return `${head}.${signature}`
}

const now = (): number => Math.floor(Date.now() / 1000)
const valid = (): string => mintAdminToken(SECRET, 'alice', 3600)

const tokens: Record<string, { token: () => string | undefined, status: number, message: RegExp }> = {
  'no token': { token: () => undefined, status: 401, message: /no Authorization header/ },
  'expired token': { token: () => forge({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', role: 'admin', exp: now() - 60 }, SECRET), status: 401, message: /expired/ },
  'alg none': { token: () => forge({ alg: 'none', typ: 'JWT' }, { sub: 'alice', role: 'admin', exp: now() + 600 }, null), status: 401, message: /valid admin token/ },
  'HS512 (algorithm not pinned)': { token: () => forge({ alg: 'HS512', typ: 'JWT' }, { sub: 'alice', role: 'admin', exp: now() + 600 }, SECRET), status: 401, message: /valid admin token/ },
  'wrong secret': { token: () => forge({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', role: 'admin', exp: now() + 600 }, 'another-secret-that-is-long-enough-000000'), status: 401, message: /signature/ },
  'no exp': { token: () => forge({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', role: 'admin' }, SECRET), status: 401, message: /exp/ },
  garbage: { token: () => 'not.a.jwt', status: 401, message: /valid admin token/ },
  'no admin role': { token: () => mintAdminToken(SECRET, 'bob', 3600, 'viewer'), status: 403, message: /admin role/ }
}

const routes: InjectOptions[] = [
  { method: 'GET', url: '/api/narrative/stats' },
  { method: 'GET', url: '/api/narrative/analytics?period=7d' },
  { method: 'DELETE', url: '/api/narrative/user/u-1' },
  { method: 'DELETE', url: '/api/narrative/cache?pattern=nothing*' },
  { method: 'POST', url: '/api/narrative/prewarm', payload: { top: 5 } }
]

async function call (app: FastifyInstance, route: InjectOptions, token?: string, extra: Partial<InjectOptions> = {}): Promise<{ status: number, body: { message?: string } }> {
  const headers: Record<string, string> = { ...(extra.headers as Record<string, string> ?? {}) }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  const res = await app.inject({ ...route, ...extra, headers } as InjectOptions)
  return { status: res.statusCode, body: res.json() }
}

t.test('every admin route: a valid admin token passes; every forgery is refused', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  for (const route of routes) {
    const ok = await call(app, route, valid())
    t.equal(ok.status, 200, `${route.method} ${route.url}: valid admin token`)
    for (const [name, c] of Object.entries(tokens)) {
      const res = await call(app, route, c.token())
      t.equal(res.status, c.status, `${route.method} ${route.url}: ${name} -> ${c.status}`)
      t.match(res.body.message, c.message, `${name}: ${res.body.message}`)
    }
  }
})

t.test('addresses: outside the allowlist, forged X-Forwarded-For, IPv6 and mapped forms', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, ADMIN_IP_ALLOWLIST: '127.0.0.1,::1,10.9.0.0/16' } })
  const stats = routes[0]
  for (const route of routes) {
    const outside = await call(app, route, valid(), { remoteAddress: '203.0.113.9' })
    t.equal(outside.status, 403, `${route.method} ${route.url}: outside the list`)
    t.match(outside.body.message, /not open to 203\.0\.113\.9/)
    const forged = await call(app, route, valid(), { remoteAddress: '203.0.113.9', headers: { 'x-forwarded-for': '127.0.0.1' } })
    t.equal(forged.status, 403, `${route.method} ${route.url}: an allowlisted address forged in X-Forwarded-For is ignored (TRUST_PROXY off)`)
  }
  t.equal((await call(app, stats, valid(), { remoteAddress: '10.9.4.4' })).status, 200, 'inside a CIDR')
  t.equal((await call(app, stats, valid(), { remoteAddress: '::ffff:10.9.4.4' })).status, 200, 'IPv4-mapped IPv6 inside the CIDR')
  t.equal((await call(app, stats, valid(), { remoteAddress: '::1' })).status, 200, 'IPv6 loopback')
  t.equal((await call(app, stats, valid(), { remoteAddress: '::ffff:203.0.113.9' })).status, 403, 'mapped outside address')
  t.equal((await call(app, stats, undefined, { remoteAddress: '203.0.113.9' })).status, 403, 'no token from outside: 403 (the address is checked first)')
})

t.test('TRUST_PROXY set: the forwarded address is the client', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, TRUST_PROXY: '127.0.0.1' } })
  const viaProxy = await call(app, routes[0], valid(), { remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '203.0.113.9' } })
  t.equal(viaProxy.status, 403, 'a trusted proxy forwarding an outside client')
  const untrustedProxy = await call(app, routes[0], valid(), { remoteAddress: '198.51.100.1', headers: { 'x-forwarded-for': '127.0.0.1' } })
  t.equal(untrustedProxy.status, 403, 'an untrusted hop cannot claim loopback')
})

t.test('past the rate limit: 429 with Retry-After; the limit is per IP', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const token = valid()
  const statuses: number[] = []
  let retryAfter: string | undefined
  for (let i = 0; i < 25; i++) {
    const res = await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: { authorization: `Bearer ${token}` } })
    statuses.push(res.statusCode)
    if (res.statusCode === 429) retryAfter = res.headers['retry-after'] as string
  }
  t.same(statuses.slice(0, 20), Array(20).fill(200), 'a burst of 20 passes')
  t.same(statuses.slice(20), Array(5).fill(429), 'then 429')
  t.ok(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`)
  const unauthenticated = await app.inject({ method: 'GET', url: '/api/narrative/stats' })
  t.equal(unauthenticated.statusCode, 429, 'unauthenticated requests are limited too')
  const other = await app.inject({ method: 'GET', url: '/api/narrative/stats', remoteAddress: '::1', headers: { authorization: `Bearer ${token}` } })
  t.equal(other.statusCode, 200, 'another address has its own budget')
})

t.test('every admin call, allowed or refused, is in the audit log; no token is logged', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const token = valid()
  await call(app, routes[0], token)
  await call(app, routes[0], undefined)
  await call(app, routes[0], token, { remoteAddress: '203.0.113.9' })
  await call(app, routes[2], token)
  let rows: Awaited<ReturnType<typeof app.db.audit.recent>> = []
  for (let i = 0; i < 50 && rows.length < 4; i++) {
    rows = await app.db.audit.recent(10)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.equal(rows.length, 4)
  const byAction = rows.map(r => `${r.outcome} ${r.status} ${r.action} ${r.ip} ${r.actor ?? '-'}`).sort()
  t.same(byAction, [
    'allowed 200 DELETE /api/narrative/user/:userId 127.0.0.1 alice',
    'allowed 200 GET /api/narrative/stats 127.0.0.1 alice',
    'denied 401 GET /api/narrative/stats 127.0.0.1 -',
    // The address is checked before the token: an outside caller's token is never read, so no actor.
    'denied 403 GET /api/narrative/stats 203.0.113.9 -'
  ])
  t.notMatch(JSON.stringify(rows), new RegExp(token.split('.')[2]), 'no token in the audit log')
})
