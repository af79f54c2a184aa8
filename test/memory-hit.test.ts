import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, stack } from './helper.ts'
import { sleep } from './support/wait.ts'

const post = { method: 'POST' as const, url: '/api/narrative' }

/** Counts the requests that took the whole path (parse, validation, handler) instead of the memory hit. */
function countWholePath (app: FastifyInstance): { readonly calls: number } {
  const counter = { calls: 0 }
  const serve = app.narratives.serve.bind(app.narratives)
  app.narratives.serve = async (...args) => { counter.calls++; return await serve(...args) }
  return counter
}

async function localApp (t: Test, extra: Record<string, string> = {}): Promise<FastifyInstance> {
  const s = await stack(t)
  return await build(t, { env: { ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000', ...extra } })
}

t.test('a body seen before is answered from memory, exactly as the whole path answers it', async t => {
  const app = await localApp(t)
  const body = { ...bodyFor(1), userId: 'u-memory' }
  const miss = await app.inject({ ...post, payload: body })
  t.equal(miss.json().cache.status, 'miss')
  await app.engine.idle() // once the write has landed, the tier holds it
  // Another text of the same body (spaced): not remembered, so it takes the whole path.
  const path = countWholePath(app)
  const whole = await app.inject({ ...post, payload: JSON.stringify(body, null, 1), headers: { 'content-type': 'application/json; charset=utf-8' } })
  t.equal(path.calls, 1, 'the spaced text went through the handler')
  const recordedBefore = app.db.buffer.counters.recorded
  const fast = await app.inject({ ...post, payload: body })
  t.equal(path.calls, 1, 'the handler did not run')
  t.equal(fast.statusCode, 200)
  t.equal(fast.headers['x-cache'], 'HIT')
  t.equal(fast.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(fast.headers.age, String(fast.json().cache.ageSeconds), 'Age, as on every answer')
  t.same(Object.keys(fast.headers).sort(), Object.keys(whole.headers).sort(), 'the same headers as an answer through the handler')
  t.same(fast.json(), whole.json(), 'the same body as an answer through the handler')
  const ageless = (text: string): string => text.replace(/"ageSeconds":\d+/, '')
  t.equal(ageless(fast.body), ageless(whole.body), 'byte for byte (but for the age, which may have ticked): the route\'s own serializer')
  t.equal(fast.json().cache.status, 'hit')
  t.equal(app.db.buffer.counters.recorded, recordedBefore + 1, 'the hit is recorded for analytics')
  const metrics = await (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /narrative_requests_total\{status="hit"\} 2/, 'counted like any hit')
  t.match(metrics, /narrative_http_request_duration_seconds_count\{route="\/api\/narrative",status="hit"\} 2/, 'timed like any hit')
})

t.test('what memory cannot answer takes the whole path, unchanged', async t => {
  const app = await localApp(t)
  const body = bodyFor(2)
  await app.inject({ ...post, payload: body })
  const path = countWholePath(app)

  // Another text of the same profile: not remembered, so parsed and validated; same key.
  const spaced = await app.inject({ ...post, payload: JSON.stringify(body, null, 2), headers: { 'content-type': 'application/json' } })
  t.equal(spaced.json().cache.status, 'hit')
  t.equal(path.calls, 1, 'an unseen text goes through the handler')

  // Bad bodies are never remembered: the same 400, naming the problem, every time.
  for (let i = 0; i < 2; i++) {
    const bad = await app.inject({ ...post, payload: { ...body, mood: 'happy' } })
    t.equal(bad.statusCode, 400)
    t.match(bad.json().message, /mood/)
    const broken = await app.inject({ ...post, payload: '{"profile":', headers: { 'content-type': 'application/json' } })
    t.equal(broken.statusCode, 400)
    t.match(broken.json().message, /not valid JSON/)
    const rule = await app.inject({ ...post, payload: { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 80, Sirius: 80 } } } })
    t.equal(rule.statusCode, 400, 'a rule violation stays a 400')
  }
  // A body over the memo's size: the whole path, still a hit.
  const big = { ...body, userId: 'u'.repeat(64) }
  await app.inject({ ...post, payload: big })
  const bigText = JSON.stringify(big) + ' '.repeat(3000)
  const before = path.calls
  const large = await app.inject({ ...post, payload: bigText, headers: { 'content-type': 'application/json' } })
  t.equal(large.json().cache.status, 'hit')
  t.equal(path.calls, before + 1, 'over 2 KiB: the handler runs')
  // A stream request for a remembered body is a stream.
  const sse = await app.inject({ ...post, payload: body, headers: { accept: 'text/event-stream' } })
  t.match(sse.headers['content-type'], /text\/event-stream/)
  t.match(sse.body, /event: done/)
  // A remembered text under another content type is not JSON: refused as before.
  const plain = await app.inject({ ...post, payload: JSON.stringify(body), headers: { 'content-type': 'text/plain' } })
  t.equal(plain.statusCode, 415)
  t.match(plain.json().message, /application\/json/)
})

t.test('a memory hit sends what the in-process tier holds now: its current age, and a replaced narrative', async t => {
  const app = await localApp(t)
  const body = bodyFor(5)
  const miss = (await app.inject({ ...post, payload: body })).json()
  await app.engine.idle() // once the write has landed, the tier holds it
  const path = countWholePath(app)
  const first = (await app.inject({ ...post, payload: body })).json()
  await sleep(1100)
  const later = (await app.inject({ ...post, payload: body })).json()
  t.equal(path.calls, 0, 'both from memory')
  t.ok(later.cache.ageSeconds >= first.cache.ageSeconds + 1, `the age went on: ${first.cache.ageSeconds} s, then ${later.cache.ageSeconds} s`)
  // Another instance's newer narrative lands in this instance's tier: the next memory hit sends it.
  const entry = app.localTier!.get(miss.cache.key)!
  app.localTier!.set(miss.cache.key, { ...entry, value: { ...entry.value, narrative: { summary: 'A newer narrative.', bullets: ['newer'] } } })
  const replaced = await app.inject({ ...post, payload: body })
  t.equal(path.calls, 0)
  t.same(replaced.json().narrative, { summary: 'A newer narrative.', bullets: ['newer'] }, 'the replaced narrative, not the text sent before')
})

t.test('an entry deleted or stale is not answered from memory', async t => {
  const app = await localApp(t, { JWT_SECRET: 'test-secret-that-is-long-enough-0123456789' })
  const body = bodyFor(3)
  await app.inject({ ...post, payload: body })
  await app.engine.idle()
  t.equal((await app.inject({ ...post, payload: body })).json().cache.status, 'hit')
  app.localTier!.deleteMatching('*')
  const path = countWholePath(app)
  const after = await app.inject({ ...post, payload: body })
  t.equal(path.calls, 1, 'nothing in memory: the whole path')
  t.equal(after.json().cache.status, 'hit', 'from Redis')
})

t.test('over a real socket: a body in two pieces, and a client that leaves midway', async t => {
  const app = await localApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const text = JSON.stringify(bodyFor(4))
  await app.inject({ ...post, payload: text, headers: { 'content-type': 'application/json' } })
  await app.engine.idle()
  const path = countWholePath(app)
  const head = `POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n`

  const split = connect(port, '127.0.0.1')
  await once(split, 'connect')
  split.write(head + text.slice(0, 20))
  await sleep(100)
  split.write(text.slice(20))
  let answer = ''
  split.on('data', d => { answer += d.toString() })
  await once(split, 'end')
  t.match(answer, /^HTTP\/1\.1 200/)
  t.match(answer, /"status":"hit"/)
  t.equal(path.calls, 0, 'answered from memory once the body was whole')

  const leaver = connect(port, '127.0.0.1')
  await once(leaver, 'connect')
  leaver.write(head + text.slice(0, 10))
  await sleep(50)
  leaver.destroy()
  await sleep(100)
  const next = await fetch(`http://127.0.0.1:${port}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text })
  t.equal(next.status, 200, 'the server carries on')
})
