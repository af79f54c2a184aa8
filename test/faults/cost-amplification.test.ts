// Cost amplification: making the server pay for more model calls than the
// limits say. A reply that fails validation is retried and never cached, and
// the generation limit used to count one permit per build: one address could
// cause twice GENERATION_RATE_LIMIT model calls a minute. Every model call
// (every attempt) is now counted, nothing invalid is cached, and an optional
// global budget (GENERATION_GLOBAL_LIMIT) caps what all addresses together
// can cost (a /48 holds 65,536 /64s, each with its own per-client budget).
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack, type Stack } from '../helper.ts'
import { postNarrative, redisClient } from './helpers.ts'

const from = async (app: FastifyInstance, n: number, remoteAddress = '127.0.0.1'): Promise<{ code: number, status: string | undefined, retryAfter: string | undefined, body: { code?: string, message?: string } }> => {
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(n), remoteAddress })
  const body = res.json()
  return { code: res.statusCode, status: body?.cache?.status, retryAfter: res.headers['retry-after'] as string | undefined, body }
}

async function nothingCached (t: Test, s: Stack, app: FastifyInstance, ns: number[]): Promise<void> {
  await app.engine.idle()
  await app.durable.close()
  const redis = redisClient(t, s.redisUrl)
  const keys = ns.map(n => app.narratives.keyOf(bodyFor(n) as never).key)
  t.equal(await redis.exists(...keys), 0, 'nothing cached in Redis')
  t.same((await Promise.all(keys.map(k => app.db.narratives.get(k)))).filter(r => r !== null), [], 'nothing in the durable tier')
}

t.test('replies that fail validation: every attempt counts against the client\'s limit, so one address causes at most GENERATION_RATE_LIMIT model calls a minute; nothing cached', async t => {
  const s = await stack(t)
  s.openai.setMode('malformed')
  // 5 a minute, 2 attempts a build: 2 + 2 calls, then a third build whose retry is refused.
  const app = await build(t, { env: { ...s.env, GENERATION_RATE_LIMIT: '5', OPENAI_MAX_ATTEMPTS: '2' } })
  const answers = []
  for (let n = 0; n < 8; n++) answers.push(await from(app, n))
  t.same(answers.map(a => a.code), [200, 200, 200, 429, 429, 429, 429, 429])
  t.same(answers.slice(0, 3).map(a => a.status), ['fallback', 'fallback', 'fallback'], 'the template answered the three builds')
  t.equal(s.openai.calls, 5, 'five model calls for a limit of five (one permit a build allowed ten)')
  t.match(answers[3].body, { code: 'NARR_RATE_LIMITED', message: /5 new narratives a minute/ })
  t.ok(Number(answers[3].retryAfter) >= 1 && Number(answers[3].retryAfter) <= 60, `Retry-After ${answers[3].retryAfter}`)
  await nothingCached(t, s, app, [0, 1, 2])
})

t.test('a retry after a failed attempt (500) is counted too; a valid retry is answered and cached', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, GENERATION_RATE_LIMIT: '3' } })
  s.openai.failNext(1, { status: 500 })
  t.equal((await from(app, 1)).status, 'miss', 'the retry succeeded')
  t.equal(s.openai.calls, 2)
  t.equal((await from(app, 2)).status, 'miss', 'the third call of the minute')
  t.equal((await from(app, 3)).code, 429, 'the fourth is refused: the retry counted')
  t.equal((await from(app, 1)).status, 'hit', 'cached answers are never limited')
})

t.test('GENERATION_GLOBAL_LIMIT: all clients together, across instances (Redis): 429 with Retry-After past it; hits still answer', async t => {
  const s = await stack(t)
  const env = { ...s.env, GENERATION_RATE_LIMIT: '2', GENERATION_GLOBAL_LIMIT: '4' }
  const apps = [await build(t, { env }), await build(t, { env })]
  // Four addresses of four /64s of one /48, each well within its own limit.
  const address = (i: number): string => `2001:db8:1:${i}::1`
  const answers = []
  for (let i = 0; i < 6; i++) answers.push(await from(apps[i % 2], i, address(i)))
  t.same(answers.map(a => a.code), [200, 200, 200, 200, 429, 429], 'four generations, then the global budget is spent on both instances')
  t.match(answers[4].body, { code: 'NARR_GLOBAL_RATE_LIMITED', message: /All clients together may cause 4 new narratives a minute/ })
  t.ok(Number(answers[4].retryAfter) >= 1 && Number(answers[4].retryAfter) <= 60, `Retry-After ${answers[4].retryAfter}`)
  t.equal(s.openai.calls, 4)
  t.equal((await from(apps[1], 0, address(9))).status, 'hit', 'a cached narrative is still answered, to anyone')
})

t.test('GENERATION_GLOBAL_LIMIT: a client refused by its own limit spends none of the global budget', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, GENERATION_RATE_LIMIT: '2', GENERATION_GLOBAL_LIMIT: '5' } })
  const greedy = []
  for (let n = 0; n < 6; n++) greedy.push((await from(app, n, '198.51.100.1')).code)
  t.same(greedy, [200, 200, 429, 429, 429, 429])
  const others = []
  for (let n = 10; n < 14; n++) others.push((await from(app, n, `198.51.100.${n}`)).code)
  t.same(others, [200, 200, 200, 429], 'the others share what is left: 5 - 2')
})

t.test('GENERATION_GLOBAL_LIMIT without Redis: counted in memory, per instance', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: '', GENERATION_RATE_LIMIT: '0', GENERATION_GLOBAL_LIMIT: '2' } })
  t.equal(app.store.kind, 'memory')
  const codes = []
  for (let n = 0; n < 3; n++) codes.push((await from(app, n, `203.0.113.${n}`)).code)
  t.same(codes, [200, 200, 429])
  t.equal((await postNarrative(app, bodyFor(0))).status, 'hit')
})
