import t from 'tap'
import { build, exampleBody, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { estimateCost } from '../src/domain/cost.ts'

const post = { method: 'POST' as const, url: '/api/narrative' }

t.test('a body that is not JSON is a 415 naming application/json, whatever its content type', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  for (const [type, payload] of [['text/plain', JSON.stringify(exampleBody)], ['application/x-www-form-urlencoded', 'profile=1'], ['application/xml', '<profile/>']]) {
    const res = await app.inject({ ...post, headers: { 'content-type': type }, payload })
    t.equal(res.statusCode, 415, `${type}: 415`)
    const body = res.json()
    t.equal(body.code, 'NARR_UNSUPPORTED_MEDIA_TYPE')
    t.match(body.message, /application\/json/, `${type}: names application/json (${body.message})`)
    t.match(body.message, type, 'and the type it was sent')
  }
  const malformed = await app.inject({ ...post, headers: { 'content-type': '/' }, payload: '{}' })
  t.equal(malformed.statusCode, 415, 'a malformed content type too')
  t.match(malformed.json().message, /application\/json/)
  const fine = await app.inject({ ...post, headers: { 'content-type': 'application/json; charset=utf-8' }, payload: JSON.stringify(exampleBody) })
  t.equal(fine.statusCode, 200, 'application/json with parameters is still taken')
  t.equal(s.openai.calls, 1)
})

t.test('a 413 states the limit: 16 KiB', async t => {
  const app = await build(t)
  const res = await app.inject({ ...post, payload: { ...exampleBody, userId: 'x'.repeat(17 * 1024) } })
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'NARR_BODY_TOO_LARGE')
  t.match(res.json().message, /16 KiB \(16384 bytes\)/)
})

t.test('another method on a known path is a 405 with Allow; an unknown path is still a 404', async t => {
  const app = await build(t)
  const get = await app.inject({ method: 'GET', url: '/api/narrative' })
  t.equal(get.statusCode, 405)
  t.equal(get.headers.allow, 'POST')
  t.equal(get.json().code, 'NARR_METHOD_NOT_ALLOWED')
  t.match(get.json().message, /GET is not allowed on \/api\/narrative; allowed: POST/)
  const put = await app.inject({ method: 'PUT', url: '/api/narrative?x=1', payload: exampleBody })
  t.equal(put.statusCode, 405, 'PUT with a body and a query string')
  t.equal(put.headers.allow, 'POST')
  const health = await app.inject({ method: 'DELETE', url: '/health' })
  t.equal(health.statusCode, 405)
  t.equal(health.headers.allow, 'GET, HEAD')
  const user = await app.inject({ method: 'GET', url: '/api/narrative/user/u-1' })
  t.equal(user.statusCode, 405, 'a parametric path')
  t.equal(user.headers.allow, 'DELETE')
  const unknown = await app.inject({ method: 'GET', url: '/api/narratives' })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.headers.allow, undefined)
  const deeper = await app.inject({ method: 'GET', url: '/api/narrative/user/u-1/more' })
  t.equal(deeper.statusCode, 404)
})

t.test('/admin/ with a trailing slash serves the dashboard', async t => {
  const app = await build(t)
  const page = await app.inject('/admin')
  const slash = await app.inject('/admin/')
  t.equal(slash.statusCode, 200)
  t.equal(slash.headers['content-type'], 'text/html; charset=utf-8')
  t.equal(slash.headers['cache-control'], 'no-store')
  t.equal(slash.body, page.body)
  t.match(String(slash.headers['content-security-policy']), /script-src 'self'/)
})

t.test('cost model: Redis is charged only when a Redis is used', async t => {
  const common = { byModel: [{ model: 'template', promptTokens: 0, completionTokens: 0, generations: 2 }], totalRequests: 5, periodDays: 7, redisMonthlyUsd: 10, prices: { template: { input: 0, output: 0 } } }
  t.same(estimateCost({ ...common, redisInUse: false }), { openai: 0, redis: 0, total: 0, withoutCache: 0, saved: 0, repaid: 0 })
  t.same(estimateCost({ ...common, redisInUse: true }), { openai: 0, redis: 2.3333, total: 2.3333, withoutCache: 0, saved: -2.3333, repaid: 0 })
})

t.test('analytics on the in-process store charge no Redis: no negative "Saved" with the template narrator', async t => {
  const secret = 'test-secret-that-is-long-enough-0123456789'
  // No REDIS_URL, no OPENAI_API_KEY: the embedded store and the template narrator.
  const app = await build(t, { env: { JWT_SECRET: secret, REDIS_MONTHLY_COST_USD: '10' } })
  t.equal(app.store.kind, 'memory')
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ ...post, payload: exampleBody })).statusCode, 200)
  await app.engine.idle()
  await app.db.buffer.flush()
  const res = await app.inject({ method: 'GET', url: '/api/narrative/analytics?period=7d', headers: { authorization: `Bearer ${mintAdminToken(secret, 'alice', 3600)}` } })
  t.equal(res.statusCode, 200)
  const cost = res.json().estimatedCost
  t.equal(res.json().totalRequests, 3)
  t.equal(cost.redis, 0, 'no Redis to pay for')
  t.equal(cost.total, 0)
  t.ok(cost.saved >= 0, `saved is not negative (${cost.saved})`)
})
