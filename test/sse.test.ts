import t from 'tap'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from './helper.ts'
import { postSse } from './support/sse-client.ts'
import { narrativeText } from '../src/domain/narrative-text.ts'
import { waitUntil } from './support/wait.ts'

function urlOf (app: FastifyInstance): string {
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/narrative`
}

interface Done { narrative: { summary: string, bullets: string[] }, cache: { status: string, key: string } }

t.test('a miss streams the model\'s text as it arrives; deltas add up to the done body and the cached value; a hit streams the same text', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 12, delayMs: 100 }) // the model takes about 1.2 s
  const app = await build(t, { env: s.env, listen: true })
  const miss = await postSse(urlOf(app), bodyFor(1))
  t.equal(miss.status, 200)
  t.equal(miss.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(miss.headers.get('cache-control'), 'no-cache, no-transform')
  t.equal(miss.headers.get('x-accel-buffering'), 'no')
  t.equal(miss.headers.get('x-cache'), 'MISS')
  t.same(miss.events[0].event, 'meta')
  t.match(miss.events[0].data, { status: 'miss' })
  const deltas = miss.events.filter(e => e.event === 'delta')
  const done = miss.events[miss.events.length - 1]
  t.equal(done.event, 'done')
  t.ok(deltas.length >= 5, `the text arrived in pieces (${deltas.length} deltas)`)
  t.ok(deltas[0].at < done.at - 600, `first delta at ${deltas[0].at} ms, long before the model finished at ${done.at} ms`)
  const body = done.data as Done
  t.equal(miss.text, narrativeText(body.narrative), 'concatenated deltas equal the done body')
  t.equal(s.openai.calls, 1)

  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const cached = JSON.parse((await redis.getBuffer(body.cache.key))!.subarray(14).toString())
  t.equal(narrativeText(cached.narrative), miss.text, 'and the cached value')

  const hit = await postSse(urlOf(app), bodyFor(1))
  t.match(hit.events[0].data, { status: 'hit' })
  t.equal(hit.headers.get('x-cache'), 'HIT')
  t.equal(hit.text, miss.text, 'a hit streams the same text')
  t.ok(hit.events[hit.events.length - 1].at < 300, 'a hit streams at once')
  t.equal(s.openai.calls, 1)
})

t.test('ten concurrent streams of one new key over two instances: one model call, ten identical texts', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 8, delayMs: 60 })
  const a = await build(t, { env: s.env, listen: true })
  const b = await build(t, { env: s.env, listen: true })
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => postSse(urlOf(i % 2 === 0 ? a : b), bodyFor(2))))
  t.equal(s.openai.calls, 1)
  const texts = new Set(results.map(r => r.text))
  t.equal(texts.size, 1, 'ten identical texts')
  for (const r of results) {
    t.equal(r.events[r.events.length - 1].event, 'done')
    t.equal(r.text, narrativeText((r.events[r.events.length - 1].data as Done).narrative))
  }
})

t.test('a late joiner in the same instance gets what was written so far at once, then the rest live', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 10, delayMs: 100 })
  const app = await build(t, { env: s.env, listen: true })
  const first = postSse(urlOf(app), bodyFor(3))
  await new Promise(resolve => setTimeout(resolve, 450))
  const late = await postSse(urlOf(app), bodyFor(3))
  const early = await first
  t.equal(s.openai.calls, 1)
  const lateDeltas = late.events.filter(e => e.event === 'delta')
  t.ok(lateDeltas.length >= 2, 'the late joiner got a catch-up delta and then live ones')
  t.ok((lateDeltas[0].data as { text: string }).text.length > 10, 'its first delta carries the text written so far')
  t.equal(late.text, early.text)
})

t.test('a model stream that fails midway: an error event, nothing cached, the next request regenerates', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 10, delayMs: 30 })
  s.openai.setMode('stream-cut')
  const app = await build(t, { env: s.env, listen: true })
  const broken = await postSse(urlOf(app), bodyFor(4))
  const last = broken.events[broken.events.length - 1]
  t.ok(broken.events.some(e => e.event === 'delta'), 'some text had arrived')
  t.equal(last.event, 'error')
  t.match(last.data, { message: /nothing was cached/ })
  t.equal(s.openai.calls, 1, 'not retried after text was shown')
  s.openai.setMode('ok')
  const again = await postSse(urlOf(app), bodyFor(4))
  t.match(again.events[0].data, { status: 'miss' }, 'the next request regenerates')
  t.equal(again.events[again.events.length - 1].event, 'done')
  t.equal(s.openai.calls, 2)
})

t.test('the model failing before its first token: the template streams as a fallback', async t => {
  const s = await stack(t)
  s.openai.setMode('error500')
  const app = await build(t, { env: s.env, listen: true })
  const res = await postSse(urlOf(app), bodyFor(5))
  t.match(res.events[0].data, { status: 'fallback' })
  t.equal(res.headers.get('x-cache'), 'FALLBACK')
  const done = res.events[res.events.length - 1]
  t.equal(done.event, 'done')
  t.match(done.data, { engine: 'template' })
  t.equal(res.text, narrativeText((done.data as Done).narrative))
})

t.test('a client that disconnects early: the narrative is still generated and cached', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 10, delayMs: 80 })
  const app = await build(t, { env: s.env, listen: true })
  const partial = await postSse(urlOf(app), bodyFor(6), { stopAfter: e => e.event === 'delta' })
  t.equal(partial.events.filter(e => e.event === 'done').length, 0, 'left before the end')
  await waitUntil(async () => (await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(6) })).json().cache.status === 'hit', { timeoutMs: 5000, what: 'the narrative to be cached' })
  t.equal(s.openai.calls, 1, 'no second model call')
})

t.test('refusals before the stream starts are ordinary JSON errors', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const bad = await fetch(urlOf(app), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } }) })
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'NARR_INVALID_PROFILE' })
})

t.test('heartbeat comments keep an idle stream open', async t => {
  const s = await stack(t)
  s.openai.setStream({ chunks: 3, delayMs: 500 })
  const app = await build(t, { env: s.env, listen: true, routes: { heartbeatMs: 200 } })
  const res = await postSse(urlOf(app), bodyFor(7))
  t.ok(res.comments.filter(c => c === 'heartbeat').length >= 3, `heartbeats: ${res.comments.length}`)
})
