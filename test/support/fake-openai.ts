// A real HTTP server (node:http, 127.0.0.1, free port) that answers
// POST /v1/chat/completions the way OpenAI does, as seen by the official
// `openai` SDK v6 (`new OpenAI({ baseURL: fake.baseURL, apiKey: 'test' })`).
//
// Why a real server and not a mocked SDK: the cache server's behaviour under
// latency, 5xx/429, hung sockets and cut streams is what we want to test, and
// those only exist on a real socket.
//
// Default content is deterministic: the same last user message always gives
// the same JSON string, so tests can compare what the cache stored with
// `JSON.stringify(defaultReply(body))`.
import { createHash, randomUUID } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type FakeMode =
  | 'ok'
  | 'hang' // never answer (until close() or the client gives up)
  | 'error500' // every request: 500 with an OpenAI error body
  | 'malformed' // 200, but content is prose, not JSON
  | 'empty' // 200, content ''
  | 'stream-cut' // send about half the response, then destroy the socket
  | 'stream-stall' // send about half the response, then go silent, socket open

export interface NarrativeReply { summary: string, bullets: string[] }

/** Parsed request body (only the fields we look at are typed). */
export interface ChatRequestBody {
  model?: string
  messages?: Array<{ role: string, content?: unknown }>
  stream?: boolean
  stream_options?: { include_usage?: boolean }
  [key: string]: unknown
}

/** Returns the narrative object (JSON-encoded into the content) or a raw content string. */
export type ReplyFn = (body: ChatRequestBody) => NarrativeReply | string

export interface FailureSpec {
  status: number
  /** JSON-encoded unless a string; defaults to an OpenAI-style error object. */
  body?: unknown
  /** e.g. { 'retry-after': '1' } for a 429 */
  headers?: Record<string, string>
}

export interface RecordedRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  /** the Authorization header, e.g. "Bearer test" */
  authorization: string | undefined
  /** parsed JSON body (undefined if it was not valid JSON) */
  body: ChatRequestBody | undefined
  at: number
  /**
   * Who called, when the base URL names it: `http://127.0.0.1:PORT/<caller>/v1`
   * (letters, digits, `-`, `_`). Lets a test with several clients tell whose call each was.
   */
  caller: string | undefined
  /** True once the caller closed the connection before the answer was fully written (it died, or gave up). */
  readonly abandoned: boolean
}

export interface FakeOpenAIOptions {
  latencyMs?: number
  mode?: FakeMode
  /** number of content deltas in a streamed answer (default 4) */
  streamChunks?: number
  /** delay between streamed chunks in ms (default 5) */
  streamDelayMs?: number
  /**
   * pieces of this many characters instead of `streamChunks` pieces: a long
   * reply in small pieces, as a model writes it (e.g. 4 for 64,000
   * characters in 16,000 deltas)
   */
  streamPieceChars?: number
  reply?: ReplyFn
}

export interface FakeOpenAI {
  /** http://127.0.0.1:PORT/v1 - pass as the SDK's baseURL */
  readonly baseURL: string
  readonly port: number
  /** POST /v1/chat/completions requests received (started, finished, failed or hanging) */
  readonly calls: number
  /** responses fully written */
  readonly completed: number
  /** requests whose connection is still open */
  readonly inFlight: number
  /** responses the client closed before they were fully written (a stream it cut off, a hang it gave up on) */
  readonly abandoned: number
  /** requests to any other path (answered 404) */
  readonly notFound: number
  /** every chat-completions request, in arrival order */
  readonly requests: RecordedRequest[]
  /** delay before the response starts (applies to requests arriving after the call) */
  setLatency(ms: number): void
  setMode(mode: FakeMode): void
  setStream(opts: { chunks?: number, delayMs?: number, pieceChars?: number }): void
  /** The next `n` requests fail with `spec`; takes precedence over the mode. Calls queue up. */
  failNext(n: number, spec: FailureSpec): void
  /** Override the content; no argument restores defaultReply. */
  setReply(fn?: ReplyFn): void
  /** Back to the start options; clears counters, requests and queued failures. */
  reset(): void
  /** Resolves once `calls >= n` (rejects after timeoutMs, default 5 s). */
  waitForCalls(n: number, timeoutMs?: number): Promise<void>
  /** Destroys every open socket (hanging/stalled ones too) and closes the server. */
  close(): Promise<void>
}

/** Text of the last user message (string content or text parts). */
export function lastUserMessage (body: ChatRequestBody | undefined): string {
  const msgs = Array.isArray(body?.messages) ? body.messages : []
  const last = [...msgs].reverse().find(m => m?.role === 'user')
  const c = last?.content
  if (typeof c === 'string') return c
  if (Array.isArray(c)) {
    return c.map(p => (p && typeof p === 'object' && typeof p.text === 'string' ? p.text : '')).join('')
  }
  return ''
}

/** The deterministic default narrative for a request. */
export function defaultReply (body: ChatRequestBody | undefined): NarrativeReply {
  const text = lastUserMessage(body)
  const h = createHash('sha256').update(text).digest('hex').slice(0, 8)
  const gist = text.replace(/\s+/g, ' ').trim().slice(0, 60)
  return {
    summary: `Narrative ${h}: ${gist}`,
    bullets: [`First point ${h}`, `Second point ${h}`, `Third point ${h}`]
  }
}

/**
 * The tool call the stand-in makes when a request offers `tools`: the named
 * `tool_choice`, else the first tool, with arguments derived from the last
 * user message (deterministic, like defaultReply).
 */
export function defaultToolCall (body: ChatRequestBody | undefined): { name: string, arguments: string } | undefined {
  const tools = Array.isArray(body?.tools) ? body.tools as Array<{ function?: { name?: unknown } }> : []
  if (tools.length === 0) return undefined
  const choice = body?.tool_choice as { function?: { name?: unknown } } | string | undefined
  if (choice === 'none') return undefined
  const chosen = typeof choice === 'object' && typeof choice?.function?.name === 'string' ? choice.function.name : tools[0]?.function?.name
  return { name: typeof chosen === 'string' ? chosen : 'tool', arguments: JSON.stringify({ query: lastUserMessage(body), page: 1 }) }
}

/** The exact `choices[0].message.content` the default reply produces. */
export function defaultContent (body: ChatRequestBody | undefined): string {
  return JSON.stringify(defaultReply(body))
}

const errorType = (status: number): string =>
  status === 429
    ? 'rate_limit_exceeded'
    : status === 401
      ? 'invalid_api_key'
      : status >= 500
        ? 'server_error'
        : 'invalid_request_error'

/** OpenAI's error envelope. */
const errorBody = (status: number, message: string): string => JSON.stringify({
  error: { message, type: errorType(status), param: null, code: errorType(status) }
})

// Rough token count: good enough for a plausible usage block.
const tokens = (s: string): number => Math.max(1, Math.ceil(s.length / 4))

/**
 * Splits into `n` nearly equal pieces, or pieces of `pieceChars` characters,
 * without breaking surrogate pairs; lazily, so a long reply in small pieces
 * is cut as it is sent.
 */
function * split (s: string, n: number, pieceChars?: number): Generator<string> {
  if (pieceChars !== undefined) {
    let piece = ''
    let count = 0
    for (const char of s) {
      piece += char
      if (++count === pieceChars) {
        yield piece
        piece = ''
        count = 0
      }
    }
    if (piece !== '') yield piece
    return
  }
  const chars = Array.from(s)
  const count = Math.max(1, Math.min(n, chars.length))
  const size = Math.ceil(chars.length / count)
  for (let i = 0; i < chars.length; i += size) yield chars.slice(i, i + size).join('')
}

/** Streamed events written back to back before the handler lets the process do anything else. */
const EVENTS_PER_TURN = 64

export async function startFakeOpenAI (opts: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
  const defaults = {
    latencyMs: opts.latencyMs ?? 0,
    mode: opts.mode ?? 'ok' as FakeMode,
    chunks: opts.streamChunks ?? 4,
    delayMs: opts.streamDelayMs ?? 5,
    pieceChars: opts.streamPieceChars,
    reply: opts.reply
  }
  let cfg = { ...defaults }
  let failures: FailureSpec[] = []
  let calls = 0
  let completed = 0
  let inFlight = 0
  let abandoned = 0
  let notFound = 0
  let requests: RecordedRequest[] = []
  let seq = 0
  let closing = false
  const sockets = new Set<Socket>()
  // pending sleeps, so close() can wake every handler instead of leaving timers
  const sleepers = new Set<{ timer: NodeJS.Timeout, resolve: (ok: boolean) => void }>()
  const callWaiters = new Set<() => void>()

  /** Resolves false if the server closed or the client went away meanwhile. */
  const pause = (ms: number, res: ServerResponse): Promise<boolean> => {
    if (ms <= 0) return Promise.resolve(!closing && !res.destroyed)
    return new Promise(resolve => {
      const s = {
        timer: setTimeout(() => { sleepers.delete(s); resolve(!closing && !res.destroyed) }, ms),
        resolve
      }
      sleepers.add(s)
    })
  }

  /** Resolves once the response can take more, or is gone. */
  const drained = (res: ServerResponse): Promise<void> => new Promise(resolve => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.once('drain', done)
    res.once('close', done)
  })

  const readBody = (req: IncomingMessage): Promise<string> => new Promise(resolve => {
    const parts: Buffer[] = []
    req.on('data', (d: Buffer) => parts.push(d))
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')))
    req.on('error', () => resolve(''))
    req.on('close', () => resolve(Buffer.concat(parts).toString('utf8')))
  })

  const sendJson = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    if (res.destroyed || res.headersSent) return
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-request-id': `req_${randomUUID().replace(/-/g, '')}`,
      ...headers
    })
    res.end(body)
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Writing to a response whose client already hung up must not crash the test process.
    res.on('error', () => {})
    const url = (req.url ?? '/').split('?')[0]
    // An optional first segment names the caller; the rest is OpenAI's path.
    const named = /^\/([\w-]{1,64})(\/v1\/.*)$/.exec(url)
    const caller = named?.[1]
    const path = named?.[2] ?? url
    const raw = await readBody(req)

    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      notFound++
      sendJson(res, 404, JSON.stringify({
        error: { message: `Unknown request URL: ${req.method} ${path}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' }
      }))
      return
    }

    calls++
    inFlight++
    const seen: { abandoned?: boolean } = {}
    res.once('finish', () => { completed++ })
    res.once('close', () => {
      inFlight--
      if (!res.writableFinished) {
        abandoned++
        seen.abandoned = true
      }
    })
    for (const w of callWaiters) w()

    let body: ChatRequestBody | undefined
    try { body = JSON.parse(raw) } catch { body = undefined }
    requests.push({
      method: req.method,
      path,
      caller,
      headers: req.headers,
      authorization: req.headers.authorization,
      body,
      at: Date.now(),
      get abandoned () { return seen.abandoned === true }
    })
    // Behaviour is fixed at arrival, so changing it mid-test affects only later requests.
    const failure = failures.shift()
    const { latencyMs, mode, chunks, delayMs, pieceChars, reply } = cfg

    if (!(await pause(latencyMs, res))) return
    if (failure) {
      const b = failure.body === undefined
        ? errorBody(failure.status, `Injected failure (status ${failure.status})`)
        : typeof failure.body === 'string' ? failure.body : JSON.stringify(failure.body)
      sendJson(res, failure.status, b, failure.headers)
      return
    }
    if (body === undefined || typeof body !== 'object' || body === null) {
      sendJson(res, 400, errorBody(400, 'We could not parse the JSON body of your request.'))
      return
    }
    if (mode === 'hang') return // keep the socket open; close() destroys it
    if (mode === 'error500') {
      sendJson(res, 500, errorBody(500, 'The server had an error while processing your request.'))
      return
    }

    let content: string
    if (mode === 'malformed') content = 'Sorry, I cannot summarise this narrative right now.'
    else if (mode === 'empty') content = ''
    else {
      const r = reply ? reply(body) : defaultReply(body)
      content = typeof r === 'string' ? r : JSON.stringify(r)
    }

    const id = `chatcmpl-fake${++seq}`
    const created = Math.floor(Date.now() / 1000)
    const model = typeof body.model === 'string' ? body.model : 'gpt-fake'
    const promptTokens = tokens(JSON.stringify(body.messages ?? []))
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: tokens(content),
      total_tokens: promptTokens + tokens(content)
    }
    const cut = mode === 'stream-cut' || mode === 'stream-stall'
    // With `tools`, the model answers with a call rather than content, as OpenAI does.
    const toolCall = mode !== 'malformed' && mode !== 'empty' && reply === undefined ? defaultToolCall(body) : undefined
    const callId = `call_fake${seq}`
    if (toolCall !== undefined) usage.completion_tokens = tokens(toolCall.arguments)
    if (toolCall !== undefined) usage.total_tokens = promptTokens + usage.completion_tokens

    if (body.stream !== true) {
      const json = JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: null,
        choices: [{
          index: 0,
          message: toolCall === undefined
            ? { role: 'assistant', content, refusal: null }
            : { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: callId, type: 'function', function: toolCall }] },
          logprobs: null,
          finish_reason: toolCall === undefined ? 'stop' : 'tool_calls'
        }],
        usage
      })
      if (!cut) { sendJson(res, 200, json); return }
      // promise the full length, deliver half: the client sees a truncated body
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
      res.write(json.slice(0, Math.floor(json.length / 2)))
      if (mode === 'stream-cut') setTimeout(() => res.socket?.destroy(), 20)
      return
    }

    // Streaming, shaped like the real API: a role chunk, content deltas, a
    // finish chunk, then (with stream_options.include_usage) a usage chunk
    // with empty choices, then [DONE]. With include_usage every other chunk
    // carries "usage": null, as OpenAI does.
    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (delta: object, finish: string | null): string => JSON.stringify({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {})
    })
    // Made as they are sent: a long reply in small pieces is tens of
    // thousands of events, too many to prepare in one turn of the loop.
    function * events (): Generator<string> {
      if (toolCall !== undefined) {
        // A tool call streams as OpenAI's does: the call's id, type and name
        // with empty arguments, then the arguments in pieces, then finish_reason tool_calls.
        yield chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: callId, type: 'function', function: { name: toolCall.name, arguments: '' } }], refusal: null }, null)
        for (const piece of split(toolCall.arguments, chunks, pieceChars)) yield chunk({ tool_calls: [{ index: 0, function: { arguments: piece } }] }, null)
        yield chunk({}, 'tool_calls')
      } else {
        yield chunk({ role: 'assistant', content: '', refusal: null }, null)
        if (content !== '') for (const piece of split(content, chunks, pieceChars)) yield chunk({ content: piece }, null)
        yield chunk({}, 'stop')
      }
      if (includeUsage) yield JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices: [], usage })
      yield '[DONE]'
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-request-id': `req_${randomUUID().replace(/-/g, '')}`
    })
    // cut/stall after the role chunk and about half the content deltas
    const stopAt = cut ? 1 + Math.ceil([...split(toolCall?.arguments ?? content, chunks, pieceChars)].length / 2) : Infinity
    let i = 0
    for (const event of events()) {
      if (i >= stopAt) break
      if (i > 0 && !(await pause(delayMs, res))) return
      // Without a delay, a long stream still lets the process (the client under test is in it) run between turns.
      if (delayMs <= 0 && i % EVENTS_PER_TURN === EVENTS_PER_TURN - 1) await new Promise(resolve => setImmediate(resolve))
      if (res.destroyed) return
      // A client that reads slowly, or stops, holds the writer back as a real server's socket would.
      if (!res.write(`data: ${event}\n\n`)) await drained(res)
      i++
    }
    if (mode === 'stream-cut') {
      await pause(20, res) // let the written chunks reach the client first
      res.socket?.destroy()
      return
    }
    if (mode === 'stream-stall') return
    res.end()
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(err => {
      if (!res.headersSent) sendJson(res, 500, errorBody(500, `fake-openai bug: ${String(err)}`))
      else res.destroy()
    })
  })
  server.on('connection', sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  const controller: FakeOpenAI = {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    get calls () { return calls },
    get completed () { return completed },
    get inFlight () { return inFlight },
    get abandoned () { return abandoned },
    get notFound () { return notFound },
    get requests () { return requests },
    setLatency (ms) { cfg.latencyMs = ms },
    setMode (mode) { cfg.mode = mode },
    setStream ({ chunks, delayMs, pieceChars }) {
      if (chunks !== undefined) cfg.chunks = chunks
      if (delayMs !== undefined) cfg.delayMs = delayMs
      if (pieceChars !== undefined) cfg.pieceChars = pieceChars
    },
    failNext (n, spec) {
      for (let i = 0; i < n; i++) failures.push(spec)
    },
    setReply (fn) { cfg.reply = fn },
    reset () {
      cfg = { ...defaults }
      failures = []
      requests = []
      calls = completed = notFound = abandoned = 0
      // inFlight is left alone: it tracks sockets that are really still open
    },
    waitForCalls (n, timeoutMs = 5000) {
      if (calls >= n) return Promise.resolve()
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (calls >= n) { clearTimeout(timer); callWaiters.delete(check); resolve() }
        }
        const timer = setTimeout(() => {
          callWaiters.delete(check)
          reject(new Error(`fake-openai: expected ${n} calls, got ${calls} after ${timeoutMs} ms`))
        }, timeoutMs)
        callWaiters.add(check)
      })
    },
    async close () {
      if (closing) return
      closing = true
      for (const s of sleepers) { clearTimeout(s.timer); s.resolve(false) }
      sleepers.clear()
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      for (const sock of sockets) sock.destroy()
      server.closeAllConnections()
      await closed
    }
  }
  return controller
}
