// POST /v1/chat/completions on the engine, against the OpenAI stand-in (a real HTTP server).
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, stack } from './helper.ts'
import type { Teardownable } from './support/env.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { defaultReply } from './support/fake-openai.ts'

const SECRET = 'chat-test-secret-that-is-long-enough-0123456789'
const admin = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
const ask = (text: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model: 'gpt-4o', messages: [{ role: 'user', content: text }], ...extra })

async function newKey (app: FastifyInstance, body: Record<string, unknown> = { name: 'app' }): Promise<{ id: string, tenant: string, secret: string }> {
  const res = await app.inject({ method: 'POST', url: '/api/keys', headers: admin, payload: body })
  if (res.statusCode !== 201) throw new Error(`key not made: ${res.statusCode} ${res.body}`)
  return res.json()
}

/** The `data:` payloads of an SSE answer. */
function events (body: string): string[] {
  return body.split('\n\n').filter(e => e.startsWith('data: ')).map(e => e.slice(6))
}

async function setup (t: Teardownable, env: Record<string, string> = {}) {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, ...env } })
  const key = await newKey(app)
  const post = async (payload: Record<string, unknown>, headers: Record<string, string> = {}, secret = key.secret) =>
    await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { authorization: `Bearer ${secret}`, ...headers }, payload })
  return { s, app, key, post }
}

t.test('a JSON request: one upstream call, then hits for the same request however it is written; OpenAI\'s shapes', async t => {
  const { s, app, post } = await setup(t)
  const first = await post(ask('hello there', { temperature: 0.2 }))
  t.equal(first.statusCode, 200, first.body)
  t.equal(first.headers['x-cache'], 'MISS')
  const completion = first.json()
  t.equal(completion.object, 'chat.completion')
  t.equal(completion.choices[0].message.role, 'assistant')
  t.equal(completion.choices[0].message.content, JSON.stringify(defaultReply({ messages: [{ role: 'user', content: 'hello there' }] })), 'the upstream\'s content, assembled from its stream')
  t.equal(completion.choices[0].finish_reason, 'stop')
  t.ok(completion.usage?.prompt_tokens > 0, 'usage as the API gives it')
  t.equal(s.openai.calls, 1)
  t.notOk(String(s.openai.requests[0].authorization).includes('nck_'), 'the caller\'s key never goes upstream')
  await app.chat.engine.idle()
  // Key order, delivery fields and parameters at their defaults do not change the key.
  const same = await post({ temperature: 0.2, user: 'u1', top_p: 1, n: 1, messages: [{ content: 'hello there', role: 'user' }], model: 'gpt-4o', stream: false })
  t.equal(same.headers['x-cache'], 'HIT')
  t.equal(same.headers['x-cache-key'], first.headers['x-cache-key'])
  t.ok(Number(same.headers.age) >= 0)
  t.same(same.json().choices, completion.choices)
  t.equal(s.openai.calls, 1, 'no second upstream call')
  // A parameter that changes the answer is another key.
  t.equal((await post(ask('hello there', { temperature: 0.3 }))).headers['x-cache'], 'MISS')
  t.equal(s.openai.calls, 2)
})

t.test('streams: concurrent identical requests make one upstream call and all get every chunk; a later one is replayed chunk for chunk', async t => {
  const { s, app, post } = await setup(t)
  s.openai.setStream({ chunks: 6, delayMs: 20 })
  const body = ask('stream me', { stream: true })
  const answers = await Promise.all(Array.from({ length: 8 }, () => post(body)))
  t.equal(s.openai.calls, 1, 'one upstream call for eight streams')
  const first = events(answers[0].body)
  t.equal(first[first.length - 1], '[DONE]')
  t.ok(first.length >= 7, `the chunks and [DONE] (${first.length})`)
  t.notOk(first.some(d => d !== '[DONE]' && JSON.parse(d).choices.length === 0), 'no usage chunk: include_usage was not asked')
  for (const a of answers) t.same(events(a.body), first, 'every stream got the same chunks')
  t.ok(answers.every(a => a.headers['content-type']?.toString().startsWith('text/event-stream')))
  await app.chat.engine.idle()
  const replay = await post(body)
  t.equal(replay.headers['x-cache'], 'HIT')
  t.same(events(replay.body), first, 'replayed with the same chunk boundaries')
  const withUsage = events((await post(ask('stream me', { stream: true, stream_options: { include_usage: true } }))).body)
  t.equal(JSON.parse(withUsage[withUsage.length - 2]).choices.length, 0, 'asked for: the usage chunk, before [DONE]')
  // The JSON request for the same completion is assembled from the stored stream.
  const json = (await post(ask('stream me'))).json()
  t.equal(json.choices[0].message.content, first.slice(0, -1).map(d => JSON.parse(d).choices[0]?.delta?.content ?? '').join(''))
  t.equal(s.openai.calls, 1)
})

t.test('Cache-Control: no-cache asks again, max-age bounds the age, only-if-cached is a 504, no-store bypasses', async t => {
  const { s, app, post } = await setup(t)
  const body = ask('controls')
  t.equal((await post(body, { 'cache-control': 'only-if-cached' })).statusCode, 504, 'not cached yet')
  t.equal(s.openai.calls, 0)
  await post(body)
  await app.chat.engine.idle()
  t.equal((await post(body, { 'cache-control': 'only-if-cached' })).headers['x-cache'], 'HIT')
  const again = await post(body, { 'cache-control': 'no-cache' })
  t.equal(again.headers['x-cache'], 'MISS', 'asked again')
  t.equal(s.openai.calls, 2)
  await app.chat.engine.idle()
  t.equal((await post(body, { 'cache-control': 'max-age=3600' })).headers['x-cache'], 'HIT')
  await new Promise(resolve => setTimeout(resolve, 1100))
  t.equal((await post(body, { 'cache-control': 'max-age=0' })).headers['x-cache'], 'MISS', 'older than max-age: asked again')
  t.equal(s.openai.calls, 3)
  const bypass = await post(body, { 'cache-control': 'no-store' })
  t.equal(bypass.headers['x-cache'], 'BYPASS')
  t.equal(s.openai.calls, 4)
  const bad = await post(body, { 'cache-control': 'max-age=soon' })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { error: { code: 'invalid_cache_control', message: /max-age/ } })
})

t.test('explain: the canonical form, the key, what was dropped, and whether it is cached', async t => {
  const { app, key, post } = await setup(t)
  const body = ask('explain me', { temperature: 1, stream: true, user: 'x', seed: 7 })
  const explain = async () => (await app.inject({ method: 'POST', url: '/v1/cache/explain', headers: { authorization: `Bearer ${key.secret}` }, payload: body })).json()
  const before = await explain()
  t.same(before.dropped, ['stream', 'temperature', 'user'])
  t.same(Object.keys(before.canonical), ['messages', 'model', 'seed'])
  t.equal(before.cached, false)
  await post({ ...body, stream: false })
  await app.chat.engine.idle()
  const after = await explain()
  t.equal(after.cached, true)
  t.equal(after.key, before.key)
  t.ok(Date.parse(after.writtenAt) > 0)
})

t.test('upstream errors: a 4xx is passed through and never cached; a 5xx passes through with its status', async t => {
  const { s, post } = await setup(t)
  s.openai.failNext(1, { status: 400, body: { error: { message: 'bad messages', type: 'invalid_request_error', code: 'bad' } } })
  const refused = await post(ask('fails'))
  t.equal(refused.statusCode, 400)
  t.same(refused.json().error.message, 'bad messages')
  t.equal((await post(ask('fails'))).statusCode, 200, 'not cached: asked again')
  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '3' } })
  const limited = await post(ask('limited'))
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['retry-after'], '3')
})

t.test('keys: none, unknown or revoked is a 401 in OpenAI\'s shape; tenants do not share entries', async t => {
  const { s, app, key, post } = await setup(t)
  const none = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: ask('x') })
  t.equal(none.statusCode, 401)
  t.match(none.json(), { error: { code: 'missing_api_key', type: 'invalid_request_error' } })
  t.equal((await post(ask('x'), {}, 'nck_not-a-key')).json().error.code, 'invalid_api_key')
  await post(ask('shared?'))
  await app.chat.engine.idle()
  const other = await newKey(app, { name: 'other app' })
  const theirs = await post(ask('shared?'), {}, other.secret)
  t.equal(theirs.headers['x-cache'], 'MISS', 'another tenant: its own entry')
  t.equal(s.openai.calls, 2)
  const listed = (await app.inject({ method: 'GET', url: '/api/keys', headers: admin })).json()
  t.equal(listed.length, 2)
  t.notOk(JSON.stringify(listed).includes(key.secret), 'secrets are never listed')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/keys/${other.id}`, headers: admin })).statusCode, 204)
  t.equal((await post(ask('shared?'), {}, other.secret)).statusCode, 401, 'revoked')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/keys/${other.id}`, headers: admin })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/api/keys', payload: { name: 'x' } })).statusCode, 401, 'keys are made by admins only')
})

t.test('a key\'s rate limit counts the upstream calls it causes, never its hits', async t => {
  const { app, post } = await setup(t)
  const limited = await newKey(app, { name: 'small', rateLimit: 1 })
  t.equal((await post(ask('one'), {}, limited.secret)).statusCode, 200)
  await app.chat.engine.idle()
  const second = await post(ask('two'), {}, limited.secret)
  t.equal(second.statusCode, 429)
  t.match(second.json(), { error: { type: 'rate_limit_error' } })
  t.equal((await post(ask('one'), {}, limited.secret)).headers['x-cache'], 'HIT', 'hits are still served')
})

t.test('without an upstream: a 503 that says what to set', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { REDIS_URL: s.redisUrl, CACHE_PREFIX: s.prefix, JWT_SECRET: SECRET, OPENAI_API_KEY: undefined, OPENAI_BASE_URL: undefined } })
  const key = await newKey(app)
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { authorization: `Bearer ${key.secret}` }, payload: ask('x') })
  t.equal(res.statusCode, 503)
  t.match(res.json(), { error: { code: 'no_upstream', message: /OPENAI_BASE_URL/ } })
})

t.test('a key\'s monthly budget: once its upstream calls have cost it, calls that need the upstream are a 429; hits are still served', async t => {
  const { s, app, post } = await setup(t, { MODEL_PRICES: '{"gpt-4o":{"input":1000000,"output":1000000}}' })
  // At a dollar a token, one call spends far more than a cent.
  const small = await newKey(app, { name: 'small budget', monthlyBudgetUsd: 0.01 })
  t.equal((await post(ask('costly'), {}, small.secret)).statusCode, 200)
  await app.chat.engine.idle()
  await new Promise(resolve => setTimeout(resolve, 200)) // the spend lands in the database
  const refused = await post(ask('another'), {}, small.secret)
  t.equal(refused.statusCode, 429)
  t.match(refused.json(), { error: { code: 'budget_exceeded', type: 'insufficient_quota', message: /monthly budget of \$0.01/ } })
  t.equal(s.openai.calls, 1, 'no upstream call for the refused request')
  t.equal((await post(ask('costly'), {}, small.secret)).headers['x-cache'], 'HIT', 'the hit is served')
  const listed = (await app.inject({ method: 'GET', url: '/api/keys', headers: admin })).json()
  t.equal(listed.find((k: { id: string }) => k.id === small.id).monthlyBudgetUsd, 0.01)
})

t.test('tenants an admin marks as sharing read and write one scope; the others keep their own', async t => {
  const { s, app, post } = await setup(t)
  const a = await newKey(app, { name: 'a', tenant: 'team-a' })
  const b = await newKey(app, { name: 'b', tenant: 'team-b' })
  await post(ask('common'), {}, a.secret)
  await app.chat.engine.idle()
  t.equal((await post(ask('common'), {}, b.secret)).headers['x-cache'], 'MISS', 'not sharing: its own entry')
  for (const tenant of ['team-a', 'team-b']) {
    const res = await app.inject({ method: 'PUT', url: `/api/tenants/${tenant}/sharing`, headers: admin, payload: { sharing: true } })
    t.same(res.json(), { tenant, sharing: true })
  }
  await post(ask('common'), {}, a.secret)
  await app.chat.engine.idle()
  const shared = await post(ask('common'), {}, b.secret)
  t.equal(shared.headers['x-cache'], 'HIT', 'sharing: b reads what a wrote')
  t.equal(s.openai.calls, 3)
  const listed = (await app.inject({ method: 'GET', url: '/api/keys', headers: admin })).json()
  t.ok(listed.filter((k: { tenant: string }) => k.tenant.startsWith('team-')).every((k: { sharing: boolean }) => k.sharing))
  t.equal((await app.inject({ method: 'PUT', url: '/api/tenants/team-a/sharing', headers: admin, payload: { sharing: 'yes' } })).statusCode, 400)
})

t.test('stale-if-error: when the upstream fails or rate-limits, the older entry answers, if the request allows it', async t => {
  const { s, app, post } = await setup(t)
  const body = ask('keep me')
  const first = (await post(body)).json()
  await app.chat.engine.idle()
  s.openai.failNext(1, { status: 500 })
  const failed = await post(body, { 'cache-control': 'no-cache' })
  t.equal(failed.statusCode, 500, 'no stale-if-error: the upstream\'s failure is passed through')
  s.openai.failNext(1, { status: 503 })
  const kept = await post(body, { 'cache-control': 'no-cache, stale-if-error=60' })
  t.equal(kept.statusCode, 200)
  t.equal(kept.headers['x-cache'], 'STALE')
  t.same(kept.json().choices, first.choices, 'the entry that was there')
  s.openai.failNext(1, { status: 400, body: { error: { message: 'no', type: 'invalid_request_error', code: 'x' } } })
  t.equal((await post(body, { 'cache-control': 'no-cache, stale-if-error=60' })).statusCode, 400, 'a 4xx is the request\'s fault: passed through')
  t.equal((await post(body, { 'cache-control': 'stale-if-error=x' })).statusCode, 400)
})

t.test('the ledger: what each key spent, and what its answers from the cache saved', async t => {
  const { app, key, post } = await setup(t, { MODEL_PRICES: '{"gpt-4o":{"input":1000,"output":1000}}' })
  await post(ask('ledger'))
  await app.chat.engine.idle()
  await post(ask('ledger'))
  await post(ask('ledger', { stream: true }))
  await app.chat.flushSavings()
  await new Promise(resolve => setTimeout(resolve, 200)) // the spend of the first call lands
  const mine = (await app.inject({ method: 'GET', url: '/api/keys', headers: admin })).json().find((k: { id: string }) => k.id === key.id)
  t.ok(mine.spentThisMonthUsd > 0, `spent ${mine.spentThisMonthUsd}`)
  t.ok(Math.abs(mine.savedThisMonthUsd - 2 * mine.spentThisMonthUsd) < 1e-9, `two answers from the cache saved twice the one call (${mine.savedThisMonthUsd})`)
})

t.test('X-Replay-Pace: original replays a stream at the pace it was written; without it, at once', async t => {
  const { s, app, post } = await setup(t)
  s.openai.setStream({ chunks: 5, delayMs: 80 })
  const body = ask('paced', { stream: true })
  await post(body)
  await app.chat.engine.idle()
  let started = Date.now()
  const fast = await post(body)
  const fastMs = Date.now() - started
  started = Date.now()
  const paced = await post(body, { 'x-replay-pace': 'original' })
  const pacedMs = Date.now() - started
  t.same(events(paced.body), events(fast.body), 'the same chunks')
  t.ok(pacedMs >= 250, `paced: at least the ~320 ms it was written over (${pacedMs} ms)`)
  t.ok(pacedMs > fastMs, `at once without the header (${fastMs} ms)`)
})

t.test('Redis loses everything: the completion comes back from the durable tier, with no second upstream call', async t => {
  const { s, app, post } = await setup(t)
  const body = ask('durable me')
  const first = (await post(body)).json()
  await app.chat.engine.idle()
  const { Redis } = await import('ioredis')
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const keys = await redis.keys(`${s.prefix}:chat:*`)
  t.ok(keys.length > 0)
  await redis.del(...keys)
  const again = await post(body)
  t.equal(again.headers['x-cache'], 'DURABLE')
  t.same(again.json().choices, first.choices)
  t.equal(s.openai.calls, 1, 'paid once')
})
