// The model misbehaving under concurrency: 500s, 429 with Retry-After, hangs,
// streams that stall or are cut, empty and malformed completions. Every
// request answers, the number of model calls stays bounded, and nothing
// partial or invalid is cached (in Redis or in the durable tier).
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack, type Stack } from '../helper.ts'
import { postSse } from '../support/sse-client.ts'
import { narrativeText } from '../../src/domain/narrative-text.ts'
import { postNarrative, redisClient, summary, type Outcome } from './helpers.ts'

const urlOf = (app: FastifyInstance): string => `http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/narrative`

/** `perKey` concurrent requests for each of `keys` distinct keys, spread over the apps. */
async function burst (apps: FastifyInstance[], keys: number[], perKey: number): Promise<Outcome[]> {
  const jobs = keys.flatMap(k => Array.from({ length: perKey }, (_, i) => ({ k, app: apps[(k + i) % apps.length] })))
  return await Promise.all(jobs.map(({ k, app }) => postNarrative(app, bodyFor(k))))
}

/** Nothing cached for these keys: not in Redis, not in PostgreSQL. */
async function assertNothingCached (t: Test, s: Stack, apps: FastifyInstance[], keys: number[]): Promise<void> {
  const redis = redisClient(t, s.redisUrl)
  for (const a of apps) await a.durable.close() // background durable writes have landed
  const cacheKeys = keys.map(k => apps[0].narratives.keyOf(bodyFor(k) as never).key)
  const inRedis = (await Promise.all(cacheKeys.map(k => redis.exists(k)))).filter(n => n > 0).length
  t.equal(inRedis, 0, 'nothing cached in Redis')
  const inDb = (await Promise.all(cacheKeys.map(k => apps[0].db.narratives.get(k)))).filter(r => r !== null).length
  t.equal(inDb, 0, 'nothing stored in the durable tier')
}

t.test('500s: 40 concurrent requests over 8 keys and two instances cost exactly attempts x keys model calls; all answer; nothing cached', async t => {
  const s = await stack(t)
  s.openai.setMode('error500')
  s.openai.setLatency(100)
  const apps = [await build(t, { env: s.env }), await build(t, { env: s.env })]
  const keys = [1, 2, 3, 4, 5, 6, 7, 8]
  const results = await burst(apps, keys, 5)
  t.comment(summary(results))
  t.same(results.filter(r => r.code !== 200 || r.status !== 'fallback'), [], 'all 200 fallback')
  t.equal(s.openai.calls, 2 * keys.length, 'OPENAI_MAX_ATTEMPTS (2) per key, the waiters called nothing')
  t.ok(Math.max(...results.map(r => r.ms)) < 2000, 'nobody waited long for a failed build')
  await assertNothingCached(t, s, apps, keys)
})

t.test('429 with Retry-After: honoured, capped at the backoff ceiling, never past the deadline; no retry storm under concurrency', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '20000' } })

  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '1' } })
  const honoured = await postNarrative(app, bodyFor(1))
  t.equal(honoured.status, 'miss')
  t.ok(honoured.ms >= 950 && honoured.ms < 2000, `Retry-After: 1 honoured (${honoured.ms} ms)`)
  t.equal(s.openai.calls, 2)

  s.openai.reset()
  s.openai.failNext(1, { status: 429, headers: { 'retry-after-ms': '700' } })
  const ms = await postNarrative(app, bodyFor(2))
  t.ok(ms.ms >= 650 && ms.ms < 1500, `retry-after-ms: 700 honoured (${ms.ms} ms)`)

  s.openai.reset()
  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '10' } })
  const capped = await postNarrative(app, bodyFor(3))
  t.equal(capped.status, 'miss')
  t.ok(capped.ms >= 1900 && capped.ms < 3500, `Retry-After: 10 capped at the 2 s backoff ceiling (${capped.ms} ms)`)
  t.equal(s.openai.calls, 2)

  // A model that keeps refusing: 30 concurrent requests over 6 keys, 5 attempts allowed but a 2.5 s deadline.
  const strict = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '2500', OPENAI_MAX_ATTEMPTS: '5' } })
  s.openai.reset()
  s.openai.failNext(1000, { status: 429, headers: { 'retry-after': '1' } })
  const started = Date.now()
  const keys = [10, 11, 12, 13, 14, 15]
  const storm = await burst([strict], keys, 5)
  t.comment(summary(storm))
  t.same(storm.filter(r => r.code !== 200 || r.status !== 'fallback'), [], 'all 200 fallback')
  t.ok(Date.now() - started < 3500, `all answered by the deadline (${Date.now() - started} ms)`)
  t.ok(s.openai.calls <= 3 * keys.length, `calls bounded by the deadline and Retry-After: ${s.openai.calls} for ${keys.length} keys (at most 3 each: t=0, 1 s, 2 s)`)
  t.ok(s.openai.calls >= 2 * keys.length, `and Retry-After was actually retried (${s.openai.calls})`)
  await assertNothingCached(t, s, [strict], keys)
})

t.test('a hanging model: 30 concurrent requests over 6 keys and two instances answer at the deadline, one call per key, nothing cached', async t => {
  const s = await stack(t)
  s.openai.setMode('hang')
  const env = { ...s.env, OPENAI_TIMEOUT_MS: '1500' }
  const apps = [await build(t, { env }), await build(t, { env })]
  const keys = [1, 2, 3, 4, 5, 6]
  const results = await burst(apps, keys, 5)
  t.comment(summary(results))
  t.same(results.filter(r => r.code !== 200 || r.status !== 'fallback'), [], 'all 200 fallback')
  t.same(results.filter(r => r.ms > 2500).map(r => r.ms), [], 'none waited much past the 1.5 s deadline')
  t.equal(s.openai.calls, keys.length, 'a hang spends the whole deadline: no second attempt, and waiters call nothing')
  await assertNothingCached(t, s, apps, keys)
})

t.test('a stream that stalls midway: JSON and SSE clients answer at the deadline; one call; nothing partial cached; the next request regenerates', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 10, delayMs: 20 })
  s.openai.setMode('stream-stall')
  const env = { ...s.env, OPENAI_TIMEOUT_MS: '1500' }
  const apps = [await build(t, { env, listen: true }), await build(t, { env, listen: true })]
  const started = Date.now()
  const [streams, plain] = await Promise.all([
    Promise.all(Array.from({ length: 6 }, (_, i) => postSse(urlOf(apps[i % 2]), bodyFor(1)))),
    Promise.all(Array.from({ length: 6 }, (_, i) => postNarrative(apps[i % 2], bodyFor(1))))
  ])
  const took = Date.now() - started
  t.ok(took < 2500, `everyone answered by about the deadline (${took} ms)`)
  t.equal(s.openai.calls, 1, 'one stalled call, not retried (its text had begun), no second builder')
  t.same(plain.filter(r => r.code !== 200 || r.status !== 'fallback'), [], 'JSON: 200 fallback')
  for (const r of streams) {
    const last = r.events[r.events.length - 1]
    t.equal(r.status, 200)
    const showedModelText = (r.events[0].data as { status?: string }).status === 'miss' && r.text !== ''
    if (showedModelText) {
      t.equal(last.event, 'error', 'a stream that showed model text ends with an error event')
    } else {
      t.equal(last.event, 'done', 'a stream that showed nothing yet gets the template')
      t.match(last.data, { engine: 'template', cache: { status: 'fallback' } })
    }
  }
  await assertNothingCached(t, s, apps, [1])
  s.openai.setMode('ok')
  const again = await postSse(urlOf(apps[0]), bodyFor(1))
  t.match(again.events[0].data, { status: 'miss' }, 'regenerated')
  t.equal(again.text, narrativeText((again.events[again.events.length - 1].data as { narrative: { summary: string, bullets: string[] } }).narrative))
  t.equal(s.openai.calls, 2)
})

t.test('a stream cut midway under concurrency: one call, every client ends (error or template), nothing partial cached', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 10, delayMs: 30 })
  s.openai.setMode('stream-cut')
  const apps = [await build(t, { env: s.env, listen: true }), await build(t, { env: s.env, listen: true })]
  const [streams, plain] = await Promise.all([
    Promise.all(Array.from({ length: 6 }, (_, i) => postSse(urlOf(apps[i % 2]), bodyFor(2)))),
    Promise.all(Array.from({ length: 6 }, (_, i) => postNarrative(apps[i % 2], bodyFor(2))))
  ])
  t.equal(s.openai.calls, 1, 'not retried once text was shown; the waiters called nothing')
  t.same(plain.filter(r => r.code !== 200 || r.status !== 'fallback'), [], 'JSON: 200 fallback')
  t.ok(streams.every(r => ['error', 'done'].includes(r.events[r.events.length - 1].event)), 'every stream ended with error or done')
  t.ok(streams.some(r => r.events[r.events.length - 1].event === 'error'), 'the streams that showed text ended with an error')
  for (const r of streams.filter(r => r.events[r.events.length - 1].event === 'done')) {
    t.match(r.events[r.events.length - 1].data, { engine: 'template' }, 'a done after a cut is the template, never the partial text')
  }
  await assertNothingCached(t, s, apps, [2])
})

t.test('empty and malformed completions under concurrency: at most attempts calls per key, never cached, and the next healthy call caches', async t => {
  const s = await stack(t)
  s.openai.setLatency(100)
  const apps = [await build(t, { env: s.env }), await build(t, { env: s.env })]
  for (const [mode, keys] of [['empty', [1, 2, 3]], ['malformed', [4, 5, 6]]] as const) {
    s.openai.reset()
    s.openai.setLatency(100)
    s.openai.setMode(mode)
    const results = await burst(apps, [...keys], 6)
    t.comment(`${mode}: ${summary(results)}`)
    t.same(results.filter(r => r.code !== 200 || r.status !== 'fallback'), [], `${mode}: all 200 fallback`)
    t.ok(s.openai.calls <= 2 * keys.length, `${mode}: ${s.openai.calls} calls for ${keys.length} keys (at most 2 each)`)
    await assertNothingCached(t, s, apps, [...keys])
  }
  s.openai.setMode('ok')
  t.equal((await postNarrative(apps[0], bodyFor(1))).status, 'miss')
  t.equal((await postNarrative(apps[1], bodyFor(1))).status, 'hit')
})

t.test('a model that answers a different JSON shape or oversized content: refused, template answers, nothing cached', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const shapes: Array<[string, string]> = [
    ['an array', '[1,2,3]'],
    ['no summary', '{"bullets":["a"]}'],
    ['a numeric summary', '{"summary":42,"bullets":[]}'],
    ['bullets not strings', '{"summary":"s","bullets":[{"x":1}]}'],
    ['a 30 kB summary', JSON.stringify({ summary: 'x'.repeat(30_000), bullets: [] })],
    ['a JSON prefix', '{"summary":"cut here']
  ]
  let n = 100
  for (const [name, content] of shapes) {
    s.openai.setReply(() => content)
    const key = n++
    const res = await postNarrative(app, bodyFor(key))
    t.equal(res.code, 200, `${name}: 200`)
    t.equal(res.status, 'fallback', `${name}: the template answers`)
    t.equal(JSON.parse(res.body).engine, 'template')
    await assertNothingCached(t, s, [app], [key])
  }
})
