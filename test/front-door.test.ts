import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { bodyFor, stack } from './helper.ts'
import type { FakeOpenAI } from './support/fake-openai.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { sleep } from './support/wait.ts'

/** The app listening on a loopback port, with the front door of serverOptions and a count of the requests Fastify itself was given. */
interface Listening { app: FastifyInstance, url: string, port: number, openai: FakeOpenAI, routedByFastify: () => number, logLines: Array<Record<string, unknown>> }

async function listening (t: Test, extra: Record<string, string> = {}): Promise<Listening> {
  const s = await stack(t)
  const config = loadConfig({ LOG_LEVEL: 'silent', OPENAI_TIMEOUT_MS: '3000', ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000', DATABASE_URL: await uniqueDatabaseUrl(t), ...extra })
  const logLines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line)); cb() } })
  const base = serverOptions(config, { level: config.logLevel, stream })
  let routed = 0
  // The app's own server factory, with Fastify's handler counted: what reaches it went past the front door.
  const fastify = Fastify({ ...base, serverFactory: (handler, opts) => base.serverFactory!((req, res) => { routed++; handler(req, res) }, opts) })
  await fastify.register(fp(app), { config })
  t.teardown(() => fastify.close())
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const { port } = fastify.server.address() as { port: number }
  return { app: fastify, url: `http://127.0.0.1:${port}/api/narrative`, port, openai: s.openai, routedByFastify: () => routed, logLines }
}

async function post (url: string, text: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Headers, text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: text })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

/** The response headers a client sees, but for the date. */
function headersOf (h: Headers): Record<string, string> {
  return Object.fromEntries([...h].filter(([name]) => name !== 'date'))
}

/** The whole answer to one raw HTTP/1.1 exchange (the connection closes after it). */
async function rawExchange (port: number, ...pieces: string[]): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.on('data', d => { answer += d.toString() })
  for (const [i, piece] of pieces.entries()) {
    if (i > 0) await sleep(50)
    socket.write(piece)
  }
  await once(socket, 'end')
  return answer
}

/**
 * A body whose narrative the app holds in memory, and whose first hit went
 * through Fastify (the front door answers once it has learnt the route's serializer).
 */
async function rememberedBody (l: Listening, n: number): Promise<string> {
  const text = JSON.stringify(bodyFor(n))
  await post(l.url, text)
  await l.app.engine.idle()
  await post(l.url, text)
  return text
}

/** POST /api/narrative as raw HTTP/1.1, with a Connection header when one is given. */
function rawPost (body: string, connection?: string): string {
  return `POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${connection === undefined ? '' : `Connection: ${connection}\r\n`}\r\n${body}`
}

t.test('a hit from memory is answered before Fastify routes it, exactly as Fastify answers it', async t => {
  const l = await listening(t)
  const text = JSON.stringify({ ...bodyFor(1), userId: 'u-front' })
  const miss = await post(l.url, text)
  t.equal(JSON.parse(miss.text).cache.status, 'miss')
  await l.app.engine.idle()
  // The first hit of a process goes through Fastify: it learns the route's serializer.
  const throughFastify = await post(l.url, text)
  t.equal(throughFastify.headers.get('x-cache'), 'HIT')
  const routed = l.routedByFastify()
  const recorded = l.app.db.buffer.counters.recorded
  const front = await post(l.url, text)
  t.equal(l.routedByFastify(), routed, 'Fastify was not given the request')
  t.equal(front.status, 200)
  t.same(headersOf(front.headers), headersOf(throughFastify.headers), 'the same headers')
  t.equal(front.headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal(front.headers.get('content-length'), String(Buffer.byteLength(front.text)))
  const ageless = (s: string): string => s.replace(/"ageSeconds":\d+/, '')
  t.equal(ageless(front.text), ageless(throughFastify.text), 'byte for byte, but for the age, which may have ticked')
  t.equal(JSON.parse(front.text).cache.status, 'hit')
  t.equal(l.app.db.buffer.counters.recorded, recorded + 1, 'recorded once for analytics')
  const metrics = await l.app.metrics.registry.metrics()
  t.match(metrics, /narrative_requests_total\{status="hit"\} 2/, 'counted once, like any hit')
  t.match(metrics, /narrative_http_request_duration_seconds_count\{route="\/api\/narrative",status="hit"\} 2/, 'timed once, like any hit')

  // A replaced narrative is sent as it is now, from the front door too.
  const key = JSON.parse(miss.text).cache.key as string
  const entry = l.app.localTier!.get(key)!
  l.app.localTier!.set(key, { ...entry, value: { ...entry.value, narrative: { summary: 'Newer.', bullets: ['newer'] } } })
  const replaced = await post(l.url, text)
  t.same(JSON.parse(replaced.text).narrative, { summary: 'Newer.', bullets: ['newer'] })
  t.equal(l.routedByFastify(), routed, 'still not routed by Fastify')
})

t.test('what the front door cannot answer reaches Fastify with its body, unchanged', async t => {
  const l = await listening(t)
  const body = bodyFor(2)
  const text = await rememberedBody(l, 2)
  const routed = l.routedByFastify()
  // A body never seen: read by the front door, then parsed, validated and answered by Fastify.
  const fresh = await post(l.url, JSON.stringify(bodyFor(3)))
  t.equal(fresh.status, 200)
  t.equal(JSON.parse(fresh.text).cache.status, 'miss', 'a miss, built from the body handed on')
  t.equal(l.routedByFastify(), routed + 1)
  // Refusals are Fastify's own, naming what was wrong.
  const unknown = await post(l.url, JSON.stringify({ ...body, mood: 'happy' }))
  t.equal(unknown.status, 400)
  t.match(JSON.parse(unknown.text).message, /mood/)
  const broken = await post(l.url, '{"profile":')
  t.equal(broken.status, 400)
  t.match(JSON.parse(broken.text).message, /not valid JSON/)
  const empty = await post(l.url, '')
  t.equal(empty.status, 400)
  t.match(JSON.parse(empty.text).message, /empty/)
  const plain = await post(l.url, text, { 'content-type': 'text/plain' })
  t.equal(plain.status, 415, 'a remembered text under another content type is not JSON')
  // A stream request for a remembered body is a stream.
  const sse = await post(l.url, text, { accept: 'text/event-stream' })
  t.match(sse.headers.get('content-type'), /text\/event-stream/)
  t.match(sse.text, /event: done/)
  // Another path or method is Fastify's.
  const query = await post(`${l.url}?x=1`, text)
  t.equal(JSON.parse(query.text).cache.status, 'hit', 'a query string: routed by Fastify, still a hit')
  const get = await fetch(l.url)
  t.equal(get.status, 405)
  t.equal(get.headers.get('allow'), 'POST')
  t.equal(l.routedByFastify(), routed + 8, 'each of those was routed by Fastify')
})

t.test('over raw sockets: a body in pieces, pipelined requests, and a client that leaves midway', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 4)
  const routed = l.routedByFastify()
  const whole = rawPost(text, 'close')
  const split = await rawExchange(l.port, whole.slice(0, -20), whole.slice(-20))
  t.match(split, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(split, /\r\nconnection: close\r\n/i, 'the client\'s Connection: close is honoured')
  t.match(split, /"status":"hit"/)

  // Two requests in one write: two answers, in order; the second a miss handed on to Fastify.
  const other = JSON.stringify(bodyFor(5))
  const both = await rawExchange(l.port, rawPost(text, 'keep-alive') + rawPost(other, 'close'))
  const answers = both.split(/(?=HTTP\/1\.1 )/)
  t.equal(answers.length, 2)
  t.match(answers[0], /x-cache: HIT/)
  t.match(answers[1], /x-cache: MISS/)
  t.equal(l.routedByFastify(), routed + 1, 'only the miss was routed by Fastify')

  const leaver = connect(l.port, '127.0.0.1')
  await once(leaver, 'connect')
  leaver.write(rawPost(text, 'close').slice(0, -10))
  await sleep(50)
  leaver.destroy()
  await sleep(100)
  t.equal((await post(l.url, text)).status, 200, 'the server carries on')
})

t.test('once closing begins the front door steps aside: Fastify takes the request, and answers say Connection: close', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 6)
  // A slow miss keeps the connection busy, so closing does not hang it up as idle;
  // the hit is written on it once closing has begun.
  l.openai.setLatency(400)
  const slow = JSON.stringify(bodyFor(7))
  const socket = connect(l.port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.on('data', d => { answer += d.toString() })
  const ended = once(socket, 'close')
  const routed = l.routedByFastify()
  socket.write(rawPost(slow))
  await l.openai.waitForCalls(2)
  const closed = l.app.close()
  await sleep(20)
  t.ok(l.app.isClosing(), 'closing has begun')
  socket.write(rawPost(text))
  await ended
  await closed
  t.equal(l.routedByFastify(), routed + 2, 'the hit written while closing was routed by Fastify, not answered by the front door')
  const answers = answer.split(/(?=HTTP\/1\.1 )/)
  t.match(answers[0], /^HTTP\/1\.1 200/, 'the request in flight finished')
  for (const a of answers) t.match(a, /\r\nconnection: close\r\n/i, 'asked to hang up')
})

t.test('at info level a hit from the front door writes the same request line as any other', async t => {
  const l = await listening(t, { LOG_LEVEL: 'info' })
  const text = await rememberedBody(l, 8)
  const routed = l.routedByFastify()
  await post(l.url, text)
  t.equal(l.routedByFastify(), routed, 'answered by the front door')
  const lines = l.logLines.filter(line => line.msg === 'request')
  t.equal(lines.length, 3, 'one line per request')
  const [fastifyHit, frontHit] = lines.slice(1)
  t.same(Object.keys(frontHit).sort(), Object.keys(fastifyHit).sort(), 'the same fields')
  t.match(frontHit, { level: 30, route: 'POST /api/narrative', statusCode: 200, cache: 'hit', keyHash: fastifyHit.keyHash, ms: Number, reqId: /^req-[0-9a-z]+$/ })
  t.not(frontHit.reqId, fastifyHit.reqId, 'request ids from one sequence')
  t.notMatch(JSON.stringify(l.logLines), /u-8|Vega/, 'no body in the logs')
})

t.test('the narrative route has only the hooks the front door stands in for', async t => {
  const l = await listening(t)
  // The front door answers hits without running the route's hooks: it does
  // their work itself (memoryHit: this very hit path; hangUpWhenClosing: it
  // steps aside while closing; logRequestLine and timed: it logs and times).
  // A hook added to the route would be skipped for those hits: teach the
  // front door its work, or make it step aside, then list it here.
  const routes = l.app.printRoutes({ includeHooks: true, commonPrefix: false, method: 'POST' })
  const block = routes.slice(routes.indexOf('/api/narrative (POST)'), routes.indexOf('/prewarm'))
  const hooks = Object.fromEntries([...block.matchAll(/\((\w+)\) (\[.*\])/g)].map(m => [m[1], JSON.parse(m[2])]))
  t.same(hooks, {
    preParsing: ['memoryHit()'],
    onSend: ['hangUpWhenClosing()'],
    onResponse: ['logRequestLine()', 'timed()']
  })
})
