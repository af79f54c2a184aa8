// The memory hit is answered inside Fastify's lifecycle (the route's
// preParsing hook, routes/narrative/memory-hit.ts): a throw there is a 500
// with the error handler's body and the server carries on; hooks added to
// the route run on hits too; and closing asks hit clients to hang up.
import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { bodyFor, stack } from './helper.ts'
import type { FakeOpenAI } from './support/fake-openai.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { sleep } from './support/wait.ts'

interface Listening { app: FastifyInstance, url: string, port: number, openai: FakeOpenAI, seen: { onRequest: string[], onSend: string[] } }

/** The app listening on a loopback port, with an onRequest and an onSend hook of the test's own added to every route. */
async function listening (t: Test): Promise<Listening> {
  const s = await stack(t)
  const config = loadConfig({ LOG_LEVEL: 'silent', OPENAI_TIMEOUT_MS: '3000', ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000', DATABASE_URL: await uniqueDatabaseUrl(t) })
  const fastify = Fastify(serverOptions(config))
  t.teardown(() => fastify.close())
  const seen = { onRequest: [] as string[], onSend: [] as string[] }
  fastify.addHook('onRequest', (request, _reply, done) => { seen.onRequest.push(request.url); done() })
  fastify.addHook('onSend', (request, reply, payload, done) => {
    seen.onSend.push(request.url)
    reply.header('X-Test-Hook', 'ran')
    done(null, payload)
  })
  await fastify.register(fp(app), { config })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const { port } = fastify.server.address() as { port: number }
  return { app: fastify, url: `http://127.0.0.1:${port}/api/narrative`, port, openai: s.openai, seen }
}

async function post (url: string, text: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Headers, text: string }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: text })
  return { status: res.status, headers: res.headers, text: await res.text() }
}

/** A body whose narrative the app holds in memory. */
async function rememberedBody (l: Listening, n: number): Promise<string> {
  const text = JSON.stringify(bodyFor(n))
  await post(l.url, text)
  await l.app.engine.idle()
  const second = await post(l.url, text)
  if (JSON.parse(second.text).cache.status !== 'hit') throw new Error(`not a hit: ${second.text}`)
  return text
}

t.test('a memory lookup that throws is a 500 with the error handler\'s body; the process answers the next request', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 1)
  const fromMemory = l.app.narratives.fromMemory.bind(l.app.narratives)
  let throws = true
  l.app.narratives.fromMemory = (bodyText: string) => {
    if (throws) throw new Error('the memory broke')
    return fromMemory(bodyText)
  }
  const uncaught: Error[] = []
  const onUncaught = (err: Error): void => { uncaught.push(err) }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.removeListener('uncaughtException', onUncaught) })

  const broken = await post(l.url, text)
  t.equal(broken.status, 500)
  t.same(JSON.parse(broken.text), { statusCode: 500, code: 'NARR_INTERNAL', error: 'Internal Server Error', message: 'Internal error; the request id is in the logs' }, 'the error handler\'s body, the cause hidden')
  t.match(broken.headers.get('x-request-id'), /^req-/, 'with its request id')
  t.equal(broken.headers.get('x-test-hook'), 'ran', 'through the onSend hooks')
  // Another, never seen body: the whole path still answers (the throw is in the lookup itself).
  const again = await post(l.url, text)
  t.equal(again.status, 500, 'each throw is its own 500')

  throws = false
  const next = await post(l.url, text)
  t.equal(next.status, 200, 'the next request is answered')
  t.equal(JSON.parse(next.text).cache.status, 'hit')
  const health = await fetch(`http://127.0.0.1:${l.port}/health`)
  t.equal(health.status, 200)
  t.same(uncaught, [], 'no uncaught exception')
})

t.test('a hit from memory goes through every hook of the route: onRequest and onSend added from outside run too', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 2)
  let wholePath = 0
  const serve = l.app.narratives.serve.bind(l.app.narratives)
  l.app.narratives.serve = async (...args) => { wholePath++; return await serve(...args) }
  const before = { onRequest: l.seen.onRequest.length, onSend: l.seen.onSend.length }
  const hit = await post(l.url, text)
  t.equal(hit.status, 200)
  t.equal(hit.headers.get('x-cache'), 'HIT')
  t.equal(wholePath, 0, 'answered from memory: the handler did not run')
  t.equal(l.seen.onRequest.length, before.onRequest + 1, 'the onRequest hook ran')
  t.equal(l.seen.onSend.length, before.onSend + 1, 'the onSend hook ran')
  t.equal(hit.headers.get('x-test-hook'), 'ran', 'and its header is on the answer')
  t.match(hit.headers.get('x-request-id'), /^req-[0-9a-z]+$/, 'the request id is on the answer')
  t.equal(hit.headers.get('content-length'), String(Buffer.byteLength(hit.text)))
})

t.test('over raw sockets: pipelined requests (a hit then a miss) are answered in order', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 3)
  const other = JSON.stringify(bodyFor(4))
  const raw = (body: string, connection: string): string => `POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: ${connection}\r\n\r\n${body}`
  const socket = connect(l.port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.on('data', d => { answer += d.toString() })
  socket.write(raw(text, 'keep-alive') + raw(other, 'close'))
  await once(socket, 'end')
  const answers = answer.split(/(?=HTTP\/1\.1 )/)
  t.equal(answers.length, 2)
  t.match(answers[0], /x-cache: HIT/)
  t.match(answers[1], /x-cache: MISS/)
})

t.test('once closing begins, a hit is still answered, and says Connection: close', async t => {
  const l = await listening(t)
  const text = await rememberedBody(l, 6)
  // A slow miss keeps the connection busy, so closing does not hang it up as idle;
  // the hit is written on it once closing has begun.
  l.openai.setLatency(400)
  const slow = JSON.stringify(bodyFor(7))
  const raw = (body: string): string => `POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  const socket = connect(l.port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.on('data', d => { answer += d.toString() })
  const ended = once(socket, 'close')
  socket.write(raw(slow))
  await l.openai.waitForCalls(2)
  const closed = l.app.close()
  await sleep(20)
  t.ok(l.app.isClosing(), 'closing has begun')
  socket.write(raw(text))
  await ended
  await closed
  const answers = answer.split(/(?=HTTP\/1\.1 )/)
  t.match(answers[0], /^HTTP\/1\.1 200/, 'the request in flight finished')
  for (const a of answers) t.match(a, /\r\nconnection: close\r\n/i, 'asked to hang up')
})
