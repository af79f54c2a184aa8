// Token checks: what a genuine signature alone must not buy. Tokens with an
// `exp` in the year 2999 or an `iat` in the future were accepted, `iss` and
// `aud` were never read, and because the token was checked before the
// address, a caller outside the allowlist could tell a valid token (403) from
// an invalid one (401). Now the address comes first (403 whatever the token),
// a token's lifetime (exp - iat) is capped by ADMIN_TOKEN_MAX_TTL (24 h by
// default), its iat may not be in the future beyond a 60 s clock skew, and
// `iss`/`aud` are required when ADMIN_TOKEN_ISSUER/ADMIN_TOKEN_AUDIENCE are set;
// `npm run token` mints what the server accepts from the same variables.
import t from 'tap'
import { createHmac } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import type { FastifyInstance } from 'fastify'
import { build, stack } from '../helper.ts'
import { CLOCK_SKEW_SECONDS, claimsProblem, mintAdminToken, parseTtl } from '../../src/admin/token.ts'
import { loadConfig } from '../../src/config.ts'

const SECRET = 'token-checks-suite-secret-long-enough-000'
const DAY = 86_400
const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const now = (): number => Math.floor(Date.now() / 1000)

/** An HS256 token with exactly these claims, signed with `secret`. */
function signed (claims: object, secret = SECRET): string {
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`
}

async function stats (app: FastifyInstance, token: string | undefined, remoteAddress = '127.0.0.1'): Promise<{ status: number, message: string }> {
  const res = await app.inject({ method: 'GET', url: '/api/narrative/stats', remoteAddress, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
  return { status: res.statusCode, message: res.json().message }
}

t.test('outside the allowlist: 403 whatever the token, with the same answer, so the routes are no token oracle', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } }) // allowlist 127.0.0.1,::1
  const tokens: Record<string, string | undefined> = {
    'no token': undefined,
    garbage: 'not.a.jwt',
    'wrong secret': signed({ sub: 'mallory', role: 'admin', iat: now(), exp: now() + 600 }, 'another-secret-that-is-long-enough-000000'),
    expired: signed({ sub: 'mallory', role: 'admin', iat: now() - 700, exp: now() - 100 }),
    'a valid admin token': mintAdminToken(SECRET, 'alice', 600),
    'a valid token without the role': mintAdminToken(SECRET, 'bob', 600, 'viewer')
  }
  const answers = new Set<string>()
  for (const [name, token] of Object.entries(tokens)) {
    const res = await stats(app, token, '203.0.113.9')
    t.equal(res.status, 403, `${name} from 203.0.113.9: 403 (${res.message})`)
    answers.add(`${res.status} ${res.message}`)
    t.equal((await stats(app, token, '127.0.0.1')).status, name === 'a valid admin token' ? 200 : name.includes('without the role') ? 403 : 401, `${name} from inside: judged on the token`)
  }
  t.equal(answers.size, 1, 'one and the same answer outside, whatever the token')
})

t.test('lifetime: exp in 2999, no iat, iat in the future or a lifetime above ADMIN_TOKEN_MAX_TTL (24 h by default) are 401', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const n = now()
  const cases: Array<[string, object, number, RegExp?]> = [
    ['exp in the year 2999', { iat: n, exp: 32_472_144_000 }, 401, /lives longer than ADMIN_TOKEN_MAX_TTL/],
    ['no iat', { exp: n + 600 }, 401, /no iat/],
    ['iat as a string', { iat: String(n), exp: n + 600 }, 401],
    ['iat a day in the future', { iat: n + DAY, exp: n + DAY + 600 }, 401, /issued in the future/],
    ['iat just beyond the clock skew', { iat: n + CLOCK_SKEW_SECONDS + 30, exp: n + 3600 }, 401, /issued in the future/],
    ['lifetime 24 h + 1 s', { iat: n, exp: n + DAY + 1 }, 401, /lives longer/],
    ['issued long ago with a long lifetime, still unexpired', { iat: n - 30 * DAY, exp: n + 600 }, 401, /lives longer/],
    ['iat within the clock skew', { iat: n + 20, exp: n + 600 }, 200],
    ['lifetime exactly 24 h', { iat: n, exp: n + DAY }, 200],
    ['lifetime 1 h, issued 30 min ago', { iat: n - 1800, exp: n + 1800 }, 200]
  ]
  for (const [name, claims, expected, message] of cases) {
    const res = await stats(app, signed({ sub: 'mallory', role: 'admin', ...claims }))
    t.equal(res.status, expected, `${name}: ${expected} (${res.message ?? 'ok'})`)
    if (message !== undefined) t.match(res.message, message)
  }

  const hourly = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, ADMIN_TOKEN_MAX_TTL: '1h' } })
  t.equal((await stats(hourly, mintAdminToken(SECRET, 'alice', 2 * 3600))).status, 401, 'ADMIN_TOKEN_MAX_TTL=1h: a 2 h token is 401')
  t.equal((await stats(hourly, mintAdminToken(SECRET, 'alice', 3600))).status, 200, 'a 1 h token passes')
})

t.test('iss and aud are required when ADMIN_TOKEN_ISSUER and ADMIN_TOKEN_AUDIENCE are set', async t => {
  const s = await stack(t)
  const env = { ...s.env, JWT_SECRET: SECRET, ADMIN_TOKEN_ISSUER: 'https://auth.example', ADMIN_TOKEN_AUDIENCE: 'narrative-admin' }
  const app = await build(t, { env })
  const n = now()
  const base = { sub: 'alice', role: 'admin', iat: n, exp: n + 600 }
  const cases: Array<[string, object, number]> = [
    ['neither', {}, 401],
    ['no aud', { iss: 'https://auth.example' }, 401],
    ['no iss', { aud: 'narrative-admin' }, 401],
    ['another issuer', { iss: 'https://evil.example', aud: 'narrative-admin' }, 401],
    ['another audience', { iss: 'https://auth.example', aud: 'billing' }, 401],
    ['issuer with a trailing slash', { iss: 'https://auth.example/', aud: 'narrative-admin' }, 401],
    ['audience as an array without it', { iss: 'https://auth.example', aud: ['billing'] }, 401],
    ['both right', { iss: 'https://auth.example', aud: 'narrative-admin' }, 200],
    ['audience as an array holding it', { iss: 'https://auth.example', aud: ['billing', 'narrative-admin'] }, 200]
  ]
  for (const [name, claims, expected] of cases) {
    const res = await stats(app, signed({ ...base, ...claims }))
    t.equal(res.status, expected, `${name}: ${expected} (${res.message ?? 'ok'})`)
    if (expected === 401) t.notMatch(res.message, /auth\.example|narrative-admin/, 'the configured values are not echoed')
  }
  t.equal((await stats(app, mintAdminToken(SECRET, 'alice', 600))).status, 401, 'a token minted without them is refused')
  t.equal((await stats(app, mintAdminToken(SECRET, 'alice', 600, { issuer: 'https://auth.example', audience: 'narrative-admin' }))).status, 200, 'mintAdminToken sets them')

  // npm run token reads the same variables as the server.
  const run = (args: string[], extra: Record<string, string> = {}): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ['--import', 'tsx', 'scripts/token.ts', ...args], { env: { ...process.env, ...env, ...extra }, encoding: 'utf8', timeout: 30_000 })
  const minted = run(['--sub', 'alice', '--ttl', '10m'])
  t.equal(minted.status, 0, `npm run token exits 0 (${String(minted.stderr)})`)
  const token = String(minted.stdout).trim()
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
  t.match(claims, { sub: 'alice', role: 'admin', iss: 'https://auth.example', aud: 'narrative-admin' }, 'with iss and aud')
  t.equal(claims.exp - claims.iat, 600)
  t.equal((await stats(app, token)).status, 200, 'and the server accepts it')
  const tooLong = run(['--sub', 'alice', '--ttl', '2d'])
  t.equal(tooLong.status, 1, 'a --ttl above ADMIN_TOKEN_MAX_TTL is refused')
  t.match(String(tooLong.stderr), /^token: --ttl must be between 1 second and 86400 seconds \(ADMIN_TOKEN_MAX_TTL/)
  t.notMatch(String(tooLong.stderr) + String(minted.stderr), new RegExp(SECRET), 'the secret is never printed')
})

t.test('ADMIN_TOKEN_* configuration: a duration or seconds, one-line errors; claimsProblem with a fixed clock', async t => {
  t.equal(loadConfig({}).adminToken.maxTtlSeconds, DAY, 'default 24 h')
  t.equal(loadConfig({ ADMIN_TOKEN_MAX_TTL: '90m' }).adminToken.maxTtlSeconds, 5400)
  t.equal(loadConfig({ ADMIN_TOKEN_MAX_TTL: '3600' }).adminToken.maxTtlSeconds, 3600)
  t.same(loadConfig({ ADMIN_TOKEN_ISSUER: 'a', ADMIN_TOKEN_AUDIENCE: 'b' }).adminToken, { maxTtlSeconds: DAY, issuer: 'a', audience: 'b' })
  for (const bad of ['forever', '0', '31d', '1w', '-5', '24 h']) {
    t.throws(() => loadConfig({ ADMIN_TOKEN_MAX_TTL: bad }), /^Invalid configuration: ADMIN_TOKEN_MAX_TTL must be seconds, or a duration such as 90s, 30m, 24h or 7d, from 1 second to 30 days$/, bad)
  }
  t.throws(() => loadConfig({ ADMIN_TOKEN_ISSUER: 'x'.repeat(201) }), /ADMIN_TOKEN_ISSUER must be the iss claim admin tokens must carry/)

  const clock = 1_700_000_000
  const policy = { maxTtlSeconds: 3600 }
  t.equal(claimsProblem({ iat: clock, exp: clock + 3600 }, policy, clock), undefined)
  t.match(claimsProblem({ iat: clock, exp: clock + 3601 }, policy, clock), /lives longer/)
  t.equal(claimsProblem({ iat: clock + CLOCK_SKEW_SECONDS, exp: clock + 600 }, policy, clock), undefined, 'iat at the edge of the skew')
  t.match(claimsProblem({ iat: clock + CLOCK_SKEW_SECONDS + 1, exp: clock + 600 }, policy, clock), /future/)
  t.match(claimsProblem({ exp: clock + 600 }, policy, clock), /no iat/)
  t.match(claimsProblem({ iat: Number.NaN, exp: clock + 600 }, policy, clock), /no iat/)
  t.throws(() => parseTtl('2h', 3600), /--ttl must be between 1 second and 3600 seconds/)
  t.equal(parseTtl('1h', 3600), 3600)
})
