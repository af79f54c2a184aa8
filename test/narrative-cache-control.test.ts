// Cache-Control on POST /api/narrative: the controls anyone may use, and
// no-cache (a model call on demand) only for callers with the refresh right.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from './helper.ts'
import type { Teardownable } from './support/env.ts'
import { mintAdminToken } from '../src/admin/token.ts'

const SECRET = 'narrative-cc-test-secret-that-is-long-enough-0123456789'
const adminToken = mintAdminToken(SECRET, 'alice', 3600)
const admin = { authorization: `Bearer ${adminToken}` }

async function setup (t: Teardownable) {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const post = async (n: number, headers: Record<string, string> = {}) =>
    await app.inject({ method: 'POST', url: '/api/narrative', headers, payload: bodyFor(n) })
  return { s, app, post }
}

async function newKey (app: FastifyInstance, body: Record<string, unknown>): Promise<{ secret: string, refresh: boolean }> {
  const res = await app.inject({ method: 'POST', url: '/api/keys', headers: admin, payload: body })
  if (res.statusCode !== 201) throw new Error(`key not made: ${res.statusCode} ${res.body}`)
  return res.json()
}

t.test('max-age: anyone gets an entry young enough, with Age; an older one is a 504 for them and a new model call with the refresh right', async t => {
  const { s, app, post } = await setup(t)
  const first = await post(1)
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(first.headers.age, '0')
  await app.engine.idle()
  const young = await post(1, { 'cache-control': 'max-age=3600' })
  t.equal(young.headers['x-cache'], 'HIT')
  t.ok(Number(young.headers.age) >= 0, `Age ${String(young.headers.age)}`)
  await new Promise(resolve => setTimeout(resolve, 1100))
  const old = await post(1, { 'cache-control': 'max-age=0' })
  t.equal(old.statusCode, 504, 'too old, and this caller may not have it written again')
  t.match(old.json(), { code: 'NARR_NOT_CACHED', message: /max-age or max-stale.*refresh right/ })
  t.equal(s.openai.calls, 1, 'no model call for it')
  const refreshed = await post(1, { 'cache-control': 'max-age=0', ...admin })
  t.equal(refreshed.headers['x-cache'], 'MISS', 'with the refresh right: written again')
  t.equal(s.openai.calls, 2)
  t.equal((await post(1, { 'cache-control': 'max-age=soon' })).json().code, 'NARR_INVALID_CACHE_CONTROL')
})

t.test('no-cache: refused without the refresh right (403), or with credentials that are not valid (401); an admin token or a key with refresh asks the model again', async t => {
  const { s, app, post } = await setup(t)
  await post(2)
  await app.engine.idle()
  const anonymous = await post(2, { 'cache-control': 'no-cache' })
  t.equal(anonymous.statusCode, 403)
  t.match(anonymous.json(), { code: 'NARR_REFRESH_FORBIDDEN', message: /refresh right: no Authorization header/ })
  const plain = await newKey(app, { name: 'no refresh' })
  t.equal(plain.refresh, false, 'by default a key has no refresh right')
  const withoutRight = await post(2, { 'cache-control': 'no-cache', authorization: `Bearer ${plain.secret}` })
  t.equal(withoutRight.statusCode, 403)
  t.match(withoutRight.json(), { message: /does not carry the refresh right/ })
  const unknown = await post(2, { 'cache-control': 'no-cache', authorization: 'Bearer nck_not-a-key' })
  t.equal(unknown.statusCode, 401)
  t.match(unknown.json(), { code: 'NARR_REFRESH_CREDENTIALS_INVALID', message: /not valid/ })
  const badToken = await post(2, { 'cache-control': 'no-cache', authorization: 'Bearer not.a.jwt' })
  t.equal(badToken.statusCode, 401)
  t.notOk(badToken.body.includes('not.a.jwt'), 'the credentials are never echoed')
  t.equal(s.openai.calls, 1, 'none of them made a model call')

  const refresher = await newKey(app, { name: 'refresher', refresh: true })
  t.equal(refresher.refresh, true)
  const byKey = await post(2, { 'cache-control': 'no-cache', authorization: `Bearer ${refresher.secret}` })
  t.equal(byKey.headers['x-cache'], 'MISS')
  t.equal(s.openai.calls, 2)
  await app.engine.idle()
  // Concurrent identical refreshes still make one model call.
  s.openai.setLatency(150)
  const together = await Promise.all(Array.from({ length: 5 }, async () => await post(2, { 'cache-control': 'no-cache', ...admin })))
  t.ok(together.every(r => r.statusCode === 200 && r.headers['x-cache'] === 'MISS'), together.map(r => r.statusCode).join(','))
  t.equal(s.openai.calls, 3, 'five refreshes at once, one model call')
  const listed = (await app.inject({ method: 'GET', url: '/api/keys', headers: admin })).json() as Array<{ name: string, refresh: boolean }>
  t.same(listed.map(k => [k.name, k.refresh]), [['no refresh', false], ['refresher', true]], 'GET /api/keys shows the right')
})

t.test('only-if-cached: a 504 rather than a model call; the entry when there is one', async t => {
  const { s, app, post } = await setup(t)
  const none = await post(3, { 'cache-control': 'only-if-cached' })
  t.equal(none.statusCode, 504)
  t.match(none.json(), { code: 'NARR_NOT_CACHED', message: /only-if-cached/ })
  t.equal(s.openai.calls, 0)
  await post(3)
  await app.engine.idle()
  t.equal((await post(3, { 'cache-control': 'only-if-cached' })).headers['x-cache'], 'HIT')
  t.equal(s.openai.calls, 1)
})

t.test('max-stale and no-store: anyone; a fresh entry is within any max-stale, no-store marks the answer and changes nothing here', async t => {
  const { s, app, post } = await setup(t)
  await post(4)
  await app.engine.idle()
  t.equal((await post(4, { 'cache-control': 'max-stale=0' })).headers['x-cache'], 'HIT')
  const noStore = await post(4, { 'cache-control': 'no-store' })
  t.equal(noStore.headers['x-cache'], 'HIT')
  t.equal(noStore.headers['cache-control'], 'no-store', 'nothing downstream keeps it')
  // The same as a stream: Age, and no-store rather than the stream's usual no-cache.
  const streamed = await post(4, { 'cache-control': 'no-store', accept: 'text/event-stream' })
  t.match(streamed.headers['content-type'], /^text\/event-stream/)
  t.equal(streamed.headers['cache-control'], 'no-store, no-transform')
  t.ok(Number(streamed.headers.age) >= 0, `a streamed hit has Age (${String(streamed.headers.age)})`)
  t.equal((await post(4, { accept: 'text/event-stream' })).headers['cache-control'], 'no-cache, no-transform', 'without it, the stream\'s usual header')
  t.equal(s.openai.calls, 1)
  t.equal((await post(4, { 'cache-control': 'max-stale=-1' })).statusCode, 400)
})

t.test('stale-if-error: when the model fails on a refresh, the entry there was answers rather than the template', async t => {
  const { s, app, post } = await setup(t)
  const first = (await post(5)).json()
  await app.engine.idle()
  s.openai.setMode('error500')
  const template = await post(5, { 'cache-control': 'no-cache', ...admin })
  t.equal(template.json().cache.status, 'fallback', 'without stale-if-error: the template stands in')
  const kept = await post(5, { 'cache-control': 'no-cache, stale-if-error=60', ...admin })
  t.equal(kept.headers['x-cache'], 'STALE')
  t.same(kept.json().narrative, first.narrative, 'the entry there was')
})
