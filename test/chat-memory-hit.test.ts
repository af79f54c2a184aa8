// The early answer of POST /v1/chat/completions (routes/chat/memory-hit.ts):
// a JSON body seen before, from a key checked lately, whose completion this
// process holds, is answered before parsing; anything else takes the whole path.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'

const SECRET = 'chat-memory-test-secret-that-is-long-enough-0123456789'
const admin = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'remember me' }] }

/** Counts the requests that reached the handler (parse, validation, handler) instead of the early answer. */
function countWholePath (app: FastifyInstance): { readonly calls: number } {
  const counter = { calls: 0 }
  const factsOf = app.chat.completions.factsOf.bind(app.chat.completions)
  app.chat.completions.factsOf = (...args) => { counter.calls++; return factsOf(...args) }
  return counter
}

async function newKey (app: FastifyInstance, payload: Record<string, unknown>): Promise<{ id: string, secret: string }> {
  return (await app.inject({ method: 'POST', url: '/api/keys', headers: admin, payload })).json()
}

t.test('a JSON body seen before is answered before parsing, as the whole path answers it; anything else takes the whole path', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000' } })
  const key = await newKey(app, { name: 'app', tenant: 'team' })
  const post = async (payload: unknown, headers: Record<string, string> = {}, secret = key.secret) =>
    await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { authorization: `Bearer ${secret}`, ...headers }, payload: payload as Record<string, unknown> })
  const miss = await post(body)
  t.equal(miss.headers['x-cache'], 'MISS')
  await app.chat.engine.idle()
  const path = countWholePath(app)
  const fast = await post(body)
  t.equal(path.calls, 0, 'the handler did not run')
  t.equal(fast.headers['x-cache'], 'HIT')
  t.equal(fast.headers['x-cache-key'], miss.headers['x-cache-key'])
  t.equal(fast.headers.age, '0')
  t.equal(fast.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(fast.body, miss.body, 'byte for byte the answer the handler gave')
  t.ok(fast.headers['x-request-id'], 'the onSend hooks ran')

  // The same text from another key of the tenant: the same entry, early.
  const sameTenant = await newKey(app, { name: 'app 2', tenant: 'team' })
  await post({ model: 'x', messages: [{ role: 'user', content: 'warm the key' }] }, {}, sameTenant.secret)
  const before = path.calls
  t.equal((await post(body, {}, sameTenant.secret)).headers['x-cache'], 'HIT')
  t.equal(path.calls, before, 'another key of the same tenant: early too')

  // Another tenant, Cache-Control, a stream, another text: the whole path, each with its own answer.
  const other = await newKey(app, { name: 'other' })
  t.equal((await post(body, {}, other.secret)).headers['x-cache'], 'MISS', 'another tenant: its own entry')
  t.equal((await post(body, { 'cache-control': 'max-age=3600' })).headers['x-cache'], 'HIT')
  t.equal((await post({ ...body, stream: true })).headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal((await post(JSON.stringify(body, null, 2), { 'content-type': 'application/json' })).headers['x-cache'], 'HIT')
  t.equal(path.calls, before + 4, 'each of those four reached the handler')

  // A revoked key is refused, never answered from memory.
  t.equal((await app.inject({ method: 'DELETE', url: `/api/keys/${key.id}`, headers: admin })).statusCode, 204)
  const revoked = await post(body)
  t.equal(revoked.statusCode, 401)
  t.equal(s.openai.calls, 3, 'the first request, the warming one, the other tenant\'s')
})
