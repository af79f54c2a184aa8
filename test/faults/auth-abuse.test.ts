// Admin auth under attack: JWT forgeries and algorithm confusion, tokens from
// a rotated secret, allowlist bypasses through forwarded headers and odd
// address forms, and rate-limit evasion by rotating forwarded addresses.
import t from 'tap'
import { createHmac, createSign, generateKeyPairSync } from 'node:crypto'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build, bodyFor, stack } from '../helper.ts'
import { mintAdminToken } from '../../src/admin/token.ts'

const SECRET = 'fault-suite-secret-that-is-long-enough-000'
const OLD_SECRET = 'the-previous-secret-that-is-long-enough-00'
const b64 = (value: object | string | Buffer): string => Buffer.from(typeof value === 'string' || Buffer.isBuffer(value) ? value : JSON.stringify(value)).toString('base64url')
const now = (): number => Math.floor(Date.now() / 1000)
const claims = (extra: object = {}): object => ({ sub: 'mallory', role: 'admin', iat: now(), exp: now() + 600, ...extra })

function hmac (alg: 'sha256' | 'sha384' | 'sha512', header: object, payload: object | string, secret: string | Buffer): string {
  const head = `${b64(header)}.${b64(payload)}`
  return `${head}.${createHmac(alg, secret).update(head).digest('base64url')}`
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string

function asymmetric (alg: 'RS256' | 'ES256', payload: object): string {
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(payload)}`
  const signer = createSign('SHA256').update(head)
  const signature = alg === 'RS256' ? signer.sign(rsa.privateKey) : signer.sign({ key: ec.privateKey, dsaEncoding: 'ieee-p1363' })
  return `${head}.${b64(signature)}`
}

/** A genuine token without the admin role, and the same with its payload swapped for an admin one (original signature kept). */
function tampered (): string {
  const viewer = mintAdminToken(SECRET, 'mallory', 600, 'viewer')
  const [head, payload, signature] = viewer.split('.')
  const decoded = JSON.parse(Buffer.from(payload, 'base64url').toString())
  return `${head}.${b64({ ...decoded, role: 'admin' })}.${signature}`
}

const forgeries: Record<string, () => string> = {
  'alg none, empty signature': () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`,
  'alg none, no signature part': () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}`,
  'alg None (case)': () => `${b64({ alg: 'None', typ: 'JWT' })}.${b64(claims())}.`,
  'alg NONE, with an HS256 signature': () => hmac('sha256', { alg: 'NONE', typ: 'JWT' }, claims(), SECRET),
  'HS512 with the right secret': () => hmac('sha512', { alg: 'HS512', typ: 'JWT' }, claims(), SECRET),
  'HS384 with the right secret': () => hmac('sha384', { alg: 'HS384', typ: 'JWT' }, claims(), SECRET),
  'RS256 header, HMAC over the RSA public key (algorithm confusion)': () => hmac('sha256', { alg: 'RS256', typ: 'JWT' }, claims(), rsaPublicPem),
  'HS256 header, HMAC over the RSA public key': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims(), rsaPublicPem),
  'genuine RS256 with an attacker key': () => asymmetric('RS256', claims()),
  'genuine ES256 with an attacker key': () => asymmetric('ES256', claims()),
  'HS256 with an embedded jwk of the attacker': () => hmac('sha256', { alg: 'HS256', typ: 'JWT', jwk: { kty: 'oct', k: b64('attacker-secret') } }, claims(), 'attacker-secret'),
  'HS256 with a kid pointing elsewhere': () => hmac('sha256', { alg: 'HS256', typ: 'JWT', kid: '../../../../dev/null' }, claims(), ''),
  'HS256 with an empty secret': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims(), ''),
  'wrong secret': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims(), 'another-secret-that-is-long-enough-000000'),
  'right secret plus a space': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims(), SECRET + ' '),
  'no exp': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, { sub: 'mallory', role: 'admin', iat: now() }, SECRET),
  'exp as a string': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ exp: String(now() + 600) }), SECRET),
  expired: () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ exp: now() - 1 }), SECRET),
  'not valid before the future (nbf)': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ nbf: now() + 600 }), SECRET),
  'tampered payload, original signature': tampered,
  'payload re-encoded with whitespace, original signature': () => {
    const good = mintAdminToken(SECRET, 'mallory', 600)
    const [head, payload, signature] = good.split('.')
    return `${head}.${b64(' ' + Buffer.from(payload, 'base64url').toString())}.${signature}`
  },
  'signature stripped': () => mintAdminToken(SECRET, 'mallory', 600).split('.').slice(0, 2).join('.') + '.',
  'signature of another token': () => {
    const a = mintAdminToken(SECRET, 'alice', 600).split('.')
    const v = mintAdminToken(SECRET, 'mallory', 600, 'viewer').split('.')
    return `${v[0]}.${b64({ ...JSON.parse(Buffer.from(v[1], 'base64url').toString()), role: 'admin' })}.${a[2]}`
  },
  'four parts': () => mintAdminToken(SECRET, 'mallory', 600) + '.extra',
  'not base64': () => '%%%.$$$.***',
  'header not JSON': () => `${b64('not json')}.${b64(claims())}.sig`,
  'a 12 KB token': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ pad: 'x'.repeat(12_000) }), 'wrong-secret-wrong-secret-wrong-secret-00')
}

const roleProblems: Record<string, () => string> = {
  'no role': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, { sub: 'mallory', iat: now(), exp: now() + 600 }, SECRET),
  'role ADMIN (case)': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ role: 'ADMIN' }), SECRET),
  'role "admin " (space)': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ role: 'admin ' }), SECRET),
  'role as an array': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ role: ['admin'] }), SECRET),
  'role as an object': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, claims({ role: { admin: true } }), SECRET),
  'roles (plural)': () => hmac('sha256', { alg: 'HS256', typ: 'JWT' }, { sub: 'mallory', roles: ['admin'], iat: now(), exp: now() + 600 }, SECRET)
}

const adminRoutes: InjectOptions[] = [
  { method: 'GET', url: '/api/narrative/stats' },
  { method: 'GET', url: '/api/narrative/analytics?period=7d' },
  { method: 'DELETE', url: '/api/narrative/user/u-1' },
  { method: 'DELETE', url: '/api/narrative/cache?pattern=nothing*' },
  { method: 'POST', url: '/api/narrative/prewarm', payload: { top: 1 } }
]

let seq = 0
/** Each call from its own address unless given one: the admin rate limit is not what these tests are about. */
async function call (app: FastifyInstance, route: InjectOptions, token: string | undefined, extra: { remoteAddress?: string, headers?: Record<string, string> } = {}): Promise<{ status: number, message: string }> {
  seq++
  const headers: Record<string, string> = { ...extra.headers }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  const res = await app.inject({ ...route, headers, remoteAddress: extra.remoteAddress ?? `10.66.${(seq >> 8) & 255}.${seq & 255}` })
  return { status: res.statusCode, message: (() => { try { return res.json().message as string } catch { return res.body } })() }
}

t.test('JWT forgeries on every admin route: 401 (403 for a genuine token without the admin role), never 200, never 5xx', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, ADMIN_IP_ALLOWLIST: '10.66.0.0/16' } })
  for (const route of adminRoutes) {
    t.equal((await call(app, route, mintAdminToken(SECRET, 'alice', 600))).status, 200, `${route.method} ${route.url}: a genuine admin token passes`)
    for (const [name, forge] of Object.entries(forgeries)) {
      const res = await call(app, route, forge())
      t.equal(res.status, 401, `${route.method} ${route.url}, ${name}: 401 (${res.message})`)
    }
    for (const [name, forge] of Object.entries(roleProblems)) {
      const res = await call(app, route, forge())
      t.equal(res.status, 403, `${route.method} ${route.url}, ${name}: 403 (${res.message})`)
    }
  }
  for (const header of ['Basic YWRtaW46YWRtaW4=', `Token ${mintAdminToken(SECRET, 'alice', 600)}`, 'Bearer', 'Bearer  ', `Bearer ${mintAdminToken(SECRET, 'alice', 600)} extra`]) {
    const res = await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: { authorization: header }, remoteAddress: '10.66.200.1' })
    t.equal(res.statusCode, 401, `Authorization: ${header.slice(0, 30)}…: 401`)
  }
})

t.test('secret rotation: a token minted with the previous JWT_SECRET is refused by an app built with the new one', async t => {
  const s = await stack(t)
  const oldToken = mintAdminToken(OLD_SECRET, 'alice', 3600)
  const before = await build(t, { env: { ...s.env, JWT_SECRET: OLD_SECRET } })
  t.equal((await call(before, adminRoutes[0], oldToken, { remoteAddress: '127.0.0.1' })).status, 200, 'accepted before the rotation')
  const after = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  for (const route of adminRoutes) {
    const res = await call(after, route, oldToken, { remoteAddress: '127.0.0.1' })
    t.equal(res.status, 401, `${route.method} ${route.url}: the old token is refused (${res.message})`)
  }
  t.equal((await call(after, adminRoutes[0], mintAdminToken(SECRET, 'alice', 600), { remoteAddress: '127.0.0.1' })).status, 200, 'a token of the new secret passes')
  const unset = await build(t, { env: { ...s.env, JWT_SECRET: undefined } })
  t.equal((await call(unset, adminRoutes[0], oldToken, { remoteAddress: '127.0.0.1' })).status, 401, 'with no JWT_SECRET (a per-process secret), no minted token passes')
})

t.test('allowlist bypass attempts with TRUST_PROXY off: forwarded headers and odd address forms never get an outside client in', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } }) // allowlist 127.0.0.1,::1
  const token = mintAdminToken(SECRET, 'alice', 600)
  const spoofs: Record<string, string>[] = [
    { 'x-forwarded-for': '127.0.0.1' },
    { 'x-forwarded-for': '::1' },
    { 'x-forwarded-for': '127.0.0.1, 127.0.0.1' },
    { 'x-forwarded-for': '203.0.113.9, 127.0.0.1' },
    { 'x-real-ip': '127.0.0.1' },
    { forwarded: 'for=127.0.0.1' },
    { forwarded: 'for="[::1]";proto=https' },
    { 'x-client-ip': '127.0.0.1', 'true-client-ip': '127.0.0.1', 'cf-connecting-ip': '127.0.0.1', 'x-originating-ip': '127.0.0.1', 'x-remote-addr': '127.0.0.1', 'client-ip': '127.0.0.1', 'x-cluster-client-ip': '127.0.0.1' },
    { host: '127.0.0.1', origin: 'http://127.0.0.1', referer: 'http://localhost/' }
  ]
  for (const route of adminRoutes) {
    for (const headers of spoofs) {
      const res = await call(app, route, token, { remoteAddress: '203.0.113.9', headers })
      t.equal(res.status, 403, `${route.method} ${route.url} from 203.0.113.9 with ${Object.keys(headers).join(', ')}: 403`)
    }
  }
  // What a socket could report (remoteAddress), allowed only when it really is an allowlisted address.
  const forms: Array<[string, number]> = [
    ['127.0.0.1', 200], ['::1', 200], ['0:0:0:0:0:0:0:1', 200], ['::ffff:127.0.0.1', 200], ['::FFFF:127.0.0.1', 200], ['0:0:0:0:0:ffff:127.0.0.1', 200], ['::1%lo', 200],
    ['203.0.113.9', 403], ['::ffff:203.0.113.9', 403], ['::ffff:cb00:7109', 403], ['::203.0.113.9', 403], ['::127.0.0.1', 403], ['::ffff:127.0.0.2', 403],
    ['127.0.0.2', 403], ['fe80::1%lo', 403], ['::2', 403], ['[::1]', 403], ['127.1', 403], ['2130706433', 403], ['0x7f.0.0.1', 403], ['0177.0.0.1', 403],
    ['127.000.000.001', 403], ['203.0.113.9%127.0.0.1', 403], ['localhost', 403], ['127.0.0.1 ', 403], [' 127.0.0.1', 403], ['127.0.0.1.', 403], ['::ffff:127.0.0.1/8', 403]
  ]
  for (const [address, expected] of forms) {
    const res = await call(app, adminRoutes[0], token, { remoteAddress: address })
    t.equal(res.status, expected, `remote address ${JSON.stringify(address)}: ${expected}`)
  }
})

t.test('allowlist behind a trusted proxy: only X-Forwarded-For counts, the rightmost untrusted hop is the client, and junk is refused', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, TRUST_PROXY: '10.0.0.5' } })
  const token = mintAdminToken(SECRET, 'alice', 600)
  const viaProxy = (headers: Record<string, string>): Promise<{ status: number, message: string }> => call(app, adminRoutes[0], token, { remoteAddress: '10.0.0.5', headers })
  t.equal((await viaProxy({ 'x-forwarded-for': '127.0.0.1' })).status, 200, 'the trusted proxy vouches for a loopback client')
  t.equal((await viaProxy({ 'x-forwarded-for': '203.0.113.9' })).status, 403, 'an outside client through the proxy')
  t.equal((await viaProxy({ 'x-forwarded-for': '127.0.0.1, 203.0.113.9' })).status, 403, 'a spoofed entry before the real client is ignored')
  t.equal((await viaProxy({ 'x-real-ip': '127.0.0.1' })).status, 403, 'X-Real-IP is not read: the client is the proxy itself, not allowlisted')
  t.equal((await viaProxy({ forwarded: 'for=127.0.0.1' })).status, 403, 'Forwarded is not read either')
  for (const junk of ['[::1]', '127.1', '2130706433', 'localhost', '127.0.0.1:80', 'unknown', '', ' ', '::ffff:7f00:1x', '::1]', '[::1']) {
    const res = await viaProxy({ 'x-forwarded-for': junk })
    t.ok(res.status === 403 || res.status === 400, `X-Forwarded-For ${JSON.stringify(junk)}: ${res.status}`)
  }
  const direct = await call(app, adminRoutes[0], token, { remoteAddress: '203.0.113.9', headers: { 'x-forwarded-for': '127.0.0.1' } })
  t.equal(direct.status, 403, 'an untrusted hop cannot claim loopback')
})

t.test('rate-limit evasion by rotating forwarded addresses, TRUST_PROXY off: the admin limit and the generation limit still bite', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, GENERATION_RATE_LIMIT: '5' } })
  const token = mintAdminToken(SECRET, 'alice', 600)
  const statuses: number[] = []
  for (let i = 0; i < 26; i++) {
    const res = await app.inject({
      method: 'GET',
      url: '/api/narrative/stats',
      remoteAddress: '127.0.0.1',
      headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': `198.51.100.${i}`, 'x-real-ip': `198.51.100.${i}`, forwarded: `for=198.51.100.${i}` }
    })
    statuses.push(res.statusCode)
  }
  t.same(statuses.slice(0, 20), Array(20).fill(200), 'the burst of 20 passes')
  t.same(statuses.slice(20), Array(6).fill(429), 'then 429, whatever the forwarded headers say')

  const gen = []
  for (let i = 0; i < 8; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(500 + i), remoteAddress: '192.0.2.7', headers: { 'x-forwarded-for': `198.51.100.${i}`, 'x-real-ip': `198.51.100.${i}` } })
    gen.push(res)
  }
  t.same(gen.map(r => r.statusCode), [200, 200, 200, 200, 200, 429, 429, 429], 'five new narratives a minute, then 429')
  t.ok(Number(gen[5].headers['retry-after']) >= 1, `with Retry-After (${gen[5].headers['retry-after']})`)
  t.equal(s.openai.calls, 5, 'the refused ones cost no model call')
  const cached = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(500), remoteAddress: '192.0.2.7' })
  t.equal(cached.statusCode, 200, 'a cached narrative is never limited')
  t.equal(cached.json().cache.status, 'hit')
})
