import http from 'node:http'
import https from 'node:https'
import { describe } from '../swr/types.ts'

/** What the upstream answered when it was not a completion: passed to the caller as it was, never cached. */
export class UpstreamError extends Error {
  override readonly name: string = 'UpstreamError'
  readonly status: number
  readonly body: string
  readonly retryAfter: string | undefined

  constructor (status: number, body: string, retryAfter?: string) {
    super(`the upstream answered ${status}`)
    this.status = status
    this.body = body
    this.retryAfter = retryAfter
  }
}

export interface UpstreamOptions {
  baseURL: string
  apiKey: string | undefined
  timeoutMs: number
}

/**
 * Asks the upstream for a streamed completion (whatever the caller asked:
 * one stored form, replayed as a stream or assembled as JSON) with usage,
 * and calls `onChunk` with each event's data as it arrives. Resolves with
 * every chunk once `[DONE]` came; a stream that breaks or ends without it rejects.
 */
export async function streamCompletion (options: UpstreamOptions, body: Record<string, unknown>, signal: AbortSignal, onChunk: (data: string) => void): Promise<string[]> {
  // One controller per call, detached from the engine's long-lived signal at the end
  // (AbortSignal.any would keep every call as its dependent: nodejs/node#55351).
  const controller = new AbortController()
  const abort = (): void => controller.abort(signal.reason)
  signal.addEventListener('abort', abort, { once: true })
  const timer = setTimeout(() => controller.abort(new Error(`no complete answer within ${options.timeoutMs} ms`)), options.timeoutMs)
  try {
    return await streamWith(options, body, controller.signal, onChunk)
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', abort)
  }
}

// Keep-alive connections to the upstream, one pool per protocol. node:http
// rather than fetch: fetch's web streams cost a streamed call here about
// 0.8 ms more, in time and in CPU, than a Node stream (measured one call at a
// time, 12 chunks; docs/chat.md). Idle sockets do not keep the process alive
// (the agent unrefs them) and are closed when the upstream's Keep-Alive says.
const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) }

/** The upstream's answer to one POST: its status and headers, and its body as a Node stream. */
async function post (url: URL, headers: Record<string, string>, body: string, signal: AbortSignal, retried = false): Promise<http.IncomingMessage> {
  const [client, agent] = url.protocol === 'https:' ? [https, agents.https] : [http, agents.http]
  return await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = client.request(url, { method: 'POST', agent, signal, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, resolve)
    request.on('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive connection the upstream closed just as it was reused: the
      // request never reached it (no answer began), so it is sent once more, on a new one.
      if (!retried && request.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') && !signal.aborted) {
        post(url, headers, body, signal, true).then(resolve, reject)
        return
      }
      reject(err)
    })
    request.end(body)
  })
}

/** A whole (error) answer's text; '' when it cannot be read. */
async function textOf (response: http.IncomingMessage): Promise<string> {
  try {
    response.setEncoding('utf8')
    let text = ''
    for await (const piece of response) text += piece as string
    return text
  } catch {
    return ''
  }
}

async function streamWith (options: UpstreamOptions, body: Record<string, unknown>, both: AbortSignal, onChunk: (data: string) => void): Promise<string[]> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' }
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${options.apiKey}`
  const request = { ...body, stream: true, stream_options: { include_usage: true } }
  let response: http.IncomingMessage
  try {
    response = await post(new URL(`${options.baseURL.replace(/\/+$/, '')}/chat/completions`), headers, JSON.stringify(request), both)
  } catch (err) {
    throw new UpstreamError(502, JSON.stringify({ error: { message: `the upstream could not be reached: ${describe(both.aborted ? both.reason : err)}`, type: 'upstream_error', code: 'upstream_unreachable' } }))
  }
  if (response.statusCode !== 200) {
    const text = await textOf(response)
    const retryAfter = response.headers['retry-after']
    throw new UpstreamError(response.statusCode ?? 502, text, typeof retryAfter === 'string' ? retryAfter : undefined)
  }
  const chunks: string[] = []
  let done = false
  let buffer = ''
  try {
    response.setEncoding('utf8')
    for await (const piece of response) {
      buffer += piece as string
      let end: number
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const event = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = event.split('\n').filter(line => line.startsWith('data:')).map(line => line.slice(5).replace(/^ /, '')).join('\n')
        if (data === '') continue
        if (data === '[DONE]') { done = true; continue }
        JSON.parse(data) // a chunk that is not JSON is a broken stream
        chunks.push(data)
        onChunk(data)
      }
    }
  } catch (err) {
    throw new UpstreamError(502, JSON.stringify({ error: { message: `the upstream stream broke: ${describe(both.aborted ? both.reason : err)}`, type: 'upstream_error', code: 'upstream_stream_broken' } }))
  } finally {
    // Anything unread (an error thrown above) is dropped with its connection.
    if (!response.complete) response.destroy()
  }
  if (!done) throw new UpstreamError(502, JSON.stringify({ error: { message: 'the upstream stream ended without [DONE]', type: 'upstream_error', code: 'upstream_stream_broken' } }))
  return chunks
}
