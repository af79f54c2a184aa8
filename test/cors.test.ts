// CORS_ORIGINS: browsers on those origins may call POST /api/narrative, and
// only that route; admin routes never answer with CORS headers. A memory hit
// with an Origin takes the whole path, so it carries them too.
import t from 'tap'
import { build, exampleBody } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'

const ALLOWED = 'https://app.example.com'
const SECRET = 'cors-test-secret-that-is-long-enough-000'

t.test('with CORS_ORIGINS set: preflight and answers of the public route, nothing on admin routes', async t => {
  const app = await build(t, { listen: true, env: { CORS_ORIGINS: `${ALLOWED},https://other.example.com`, JWT_SECRET: SECRET, LOCAL_CACHE_MAX_ENTRIES: '100' } })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const preflight = async (path: string, origin: string): Promise<Response> => await fetch(base + path, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } })

  const ok = await preflight('/api/narrative', ALLOWED)
  t.equal(ok.status, 204, 'a preflight from an allowed origin')
  t.equal(ok.headers.get('access-control-allow-origin'), ALLOWED)
  t.match(ok.headers.get('access-control-allow-methods') ?? '', /POST/)
  t.match(ok.headers.get('access-control-allow-headers') ?? '', /content-type/)

  const foreign = await preflight('/api/narrative', 'https://evil.example.net')
  t.equal(foreign.headers.get('access-control-allow-origin'), null, 'no CORS for an origin not in the list')

  const adminPreflight = await preflight('/api/narrative/stats', ALLOWED)
  t.equal(adminPreflight.headers.get('access-control-allow-origin'), null, 'no CORS preflight for an admin route')

  // The answer itself, a miss then a memory hit, both readable by the page.
  const postFrom = async (origin?: string): Promise<Response> => await fetch(`${base}/api/narrative`, { method: 'POST', headers: { ...(origin === undefined ? {} : { origin }), 'content-type': 'application/json' }, body: JSON.stringify(exampleBody) })
  const miss = await postFrom(ALLOWED)
  t.equal(miss.headers.get('x-cache'), 'MISS')
  t.equal(miss.headers.get('access-control-allow-origin'), ALLOWED, 'a miss is readable by the allowed origin')
  t.match(miss.headers.get('access-control-expose-headers') ?? '', /x-cache/i, 'X-Cache exposed to the page')
  // Requests without an Origin teach the front door this body (it answers such hits before Fastify routes them).
  await app.engine.idle()
  for (let i = 0; i < 2; i++) t.equal((await postFrom()).headers.get('x-cache'), 'HIT')
  const hit = await postFrom(ALLOWED)
  t.equal(hit.headers.get('x-cache'), 'HIT')
  t.equal(hit.headers.get('access-control-allow-origin'), ALLOWED, 'a memory hit is readable by the allowed origin too')

  const admin = await fetch(`${base}/api/narrative/stats`, { headers: { origin: ALLOWED, authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 600)}` } })
  t.equal(admin.status, 200)
  t.equal(admin.headers.get('access-control-allow-origin'), null, 'admin answers carry no CORS header')
})

t.test('without CORS_ORIGINS: no CORS header anywhere', async t => {
  const app = await build(t, { env: {} })
  const res = await app.inject({ method: 'POST', url: '/api/narrative', headers: { origin: ALLOWED }, payload: exampleBody })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['access-control-allow-origin'], undefined)
  const pre = await app.inject({ method: 'OPTIONS', url: '/api/narrative', headers: { origin: ALLOWED, 'access-control-request-method': 'POST' } })
  t.equal(pre.headers['access-control-allow-origin'], undefined)
})
