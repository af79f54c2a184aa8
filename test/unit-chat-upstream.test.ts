// src/chat/upstream.ts against real HTTP servers on loopback: every chunk in
// order (also when a character is split across writes), the upstream's own
// errors passed on, and every way a call can fail ending in an UpstreamError
// that says which (never a hang, never a partial answer taken as whole).
import t from 'tap'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { streamCompletion, UpstreamError } from '../src/chat/upstream.ts'
import { freePort } from './support/ports.ts'
import type { Teardownable } from './support/env.ts'

const chunk = (content: string): string => JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] })
const event = (data: string): string => `data: ${data}\n\n`
const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }

/** A loopback server answering with `handle`; closed (its sockets too) at the test's end. */
async function upstream (t: Teardownable, handle: (req: http.IncomingMessage, res: http.ServerResponse, seen: number) => void): Promise<{ baseURL: string, requests: () => number, bodies: string[] }> {
  let seen = 0
  const bodies: string[] = []
  const server = http.createServer((req, res) => {
    seen++
    const n = seen
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (piece: string) => { text += piece })
    req.on('end', () => { bodies.push(text); handle(req, res, n) })
  })
  const sockets = new Set<Socket>()
  server.on('connection', socket => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return { baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`, requests: () => seen, bodies }
}

async function failure (promise: Promise<unknown>): Promise<{ status: number, code: string, message: string, retryAfter?: string, body: string }> {
  try {
    await promise
  } catch (err) {
    if (!(err instanceof UpstreamError)) throw err
    let parsed: { error?: { code?: string, message?: string } } = {}
    try { parsed = JSON.parse(err.body) } catch {}
    return { status: err.status, code: parsed.error?.code ?? '', message: parsed.error?.message ?? '', retryAfter: err.retryAfter, body: err.body }
  }
  throw new Error('expected the call to fail')
}

const options = (baseURL: string, timeoutMs = 5000): { baseURL: string, apiKey: string, timeoutMs: number } => ({ baseURL, apiKey: 'sk-upstream-test', timeoutMs })

t.test('every chunk, in order, as it comes; a character split across two writes is whole; the request asks for a stream with usage', async t => {
  const text = 'héllo wörld — ✓'
  const up = await upstream(t, (req, res) => {
    t.equal(req.headers.authorization, 'Bearer sk-upstream-test', 'the server\'s key goes upstream')
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const all = Buffer.from(event(chunk(text)) + event(chunk('second')) + 'data: [DONE]\n\n')
    // Split inside the multi-byte 'é' (bytes 1 and 2 of the content's first character).
    const cut = all.indexOf(Buffer.from('é')) + 1
    res.write(all.subarray(0, cut))
    setTimeout(() => res.end(all.subarray(cut)), 20)
  })
  const seen: string[] = []
  const chunks = await streamCompletion(options(up.baseURL), body, new AbortController().signal, data => seen.push(data))
  t.same(chunks.map(c => JSON.parse(c).choices[0].delta.content), [text, 'second'])
  t.same(seen, chunks, 'onChunk got each chunk')
  const sent = JSON.parse(up.bodies[0])
  t.equal(sent.stream, true)
  t.same(sent.stream_options, { include_usage: true })
  t.same(sent.messages, body.messages)
})

t.test('an upstream error is passed on with its status, body and Retry-After', async t => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' })
    res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error', code: 'rate_limit_exceeded' } }))
  })
  const failed = await failure(streamCompletion(options(up.baseURL), body, new AbortController().signal, () => {}))
  t.equal(failed.status, 429)
  t.equal(failed.retryAfter, '7')
  t.equal(JSON.parse(failed.body).error.message, 'slow down')
})

t.test('nobody listening: a 502 that says the upstream could not be reached', async t => {
  const port = await freePort()
  const failed = await failure(streamCompletion(options(`http://127.0.0.1:${port}/v1`), body, new AbortController().signal, () => {}))
  t.equal(failed.status, 502)
  t.equal(failed.code, 'upstream_unreachable')
  t.match(failed.message, /could not be reached: .*ECONNREFUSED/)
})

t.test('a stream cut midway, or ended without [DONE], or with a chunk that is not JSON, is a broken stream', async t => {
  const cut = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(event(chunk('half')))
    setTimeout(() => res.socket?.destroy(), 20)
  })
  const seen: string[] = []
  const broken = await failure(streamCompletion(options(cut.baseURL), body, new AbortController().signal, data => seen.push(data)))
  t.equal(broken.status, 502)
  t.equal(broken.code, 'upstream_stream_broken')
  t.equal(seen.length, 1, 'what came before the cut was relayed as it came')

  const ended = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(event(chunk('all but the end')))
  })
  const noDone = await failure(streamCompletion(options(ended.baseURL), body, new AbortController().signal, () => {}))
  t.equal(noDone.code, 'upstream_stream_broken')
  t.match(noDone.message, /without \[DONE\]/)

  const garbled = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(event('{not json') + 'data: [DONE]\n\n')
  })
  t.equal((await failure(streamCompletion(options(garbled.baseURL), body, new AbortController().signal, () => {}))).code, 'upstream_stream_broken')
})

t.test('an upstream that stalls is given up at the deadline, before or after its headers', async t => {
  const silent = await upstream(t, () => { /* never answers */ })
  const started = Date.now()
  const beforeHeaders = await failure(streamCompletion(options(silent.baseURL, 150), body, new AbortController().signal, () => {}))
  t.equal(beforeHeaders.code, 'upstream_unreachable')
  t.match(beforeHeaders.message, /no complete answer within 150 ms/)
  const stalled = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(event(chunk('then nothing')))
  })
  const afterHeaders = await failure(streamCompletion(options(stalled.baseURL, 150), body, new AbortController().signal, () => {}))
  t.equal(afterHeaders.code, 'upstream_stream_broken')
  t.match(afterHeaders.message, /no complete answer within 150 ms/)
  t.ok(Date.now() - started < 4000, 'neither waited for anything but its deadline')
})

t.test('the caller\'s signal stops the call', async t => {
  const stalled = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(event(chunk('then nothing')))
  })
  const caller = new AbortController()
  const call = streamCompletion(options(stalled.baseURL), body, caller.signal, () => { caller.abort(new Error('the server is closing')) })
  const failed = await failure(call)
  t.equal(failed.code, 'upstream_stream_broken')
  t.match(failed.message, /the server is closing/)
})

t.test('a kept-alive connection the upstream drops as it is reused: sent once more on a new one; a fresh connection dropped is not retried', async t => {
  const answer = (res: http.ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(event(chunk('ok')) + 'data: [DONE]\n\n')
  }
  const firstSocket = new Set<Socket>()
  const up = await upstream(t, (req, res, n) => {
    if (n === 1) firstSocket.add(req.socket)
    // The second request arrives on the first one's kept-alive connection: drop it unanswered.
    if (n === 2) {
      t.ok(firstSocket.has(req.socket), 'the second call reused the first one\'s connection')
      req.socket.destroy()
      return
    }
    answer(res)
  })
  await streamCompletion(options(up.baseURL), body, new AbortController().signal, () => {})
  const chunks = await streamCompletion(options(up.baseURL), body, new AbortController().signal, () => {})
  t.equal(chunks.length, 1, 'the second call was answered')
  t.equal(up.requests(), 3, 'after one retry on a new connection')

  const dropsAll = await upstream(t, req => { req.socket.destroy() })
  const failed = await failure(streamCompletion(options(dropsAll.baseURL), body, new AbortController().signal, () => {}))
  t.equal(failed.code, 'upstream_unreachable')
  t.equal(dropsAll.requests(), 1, 'a new connection dropped is not asked again')
})
