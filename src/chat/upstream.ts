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

async function streamWith (options: UpstreamOptions, body: Record<string, unknown>, both: AbortSignal, onChunk: (data: string) => void): Promise<string[]> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' }
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${options.apiKey}`
  const request = { ...body, stream: true, stream_options: { include_usage: true } }
  let response: Response
  try {
    response = await fetch(`${options.baseURL.replace(/\/+$/, '')}/chat/completions`, { method: 'POST', headers, body: JSON.stringify(request), signal: both })
  } catch (err) {
    throw new UpstreamError(502, JSON.stringify({ error: { message: `the upstream could not be reached: ${describe(err)}`, type: 'upstream_error', code: 'upstream_unreachable' } }))
  }
  if (response.status !== 200 || response.body === null) {
    const text = await response.text().catch(() => '')
    throw new UpstreamError(response.status, text, response.headers.get('retry-after') ?? undefined)
  }
  const chunks: string[] = []
  let done = false
  let buffer = ''
  const decoder = new TextDecoder()
  try {
    for await (const piece of response.body) {
      buffer += decoder.decode(piece as Uint8Array, { stream: true })
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
    throw new UpstreamError(502, JSON.stringify({ error: { message: `the upstream stream broke: ${describe(err)}`, type: 'upstream_error', code: 'upstream_stream_broken' } }))
  }
  if (!done) throw new UpstreamError(502, JSON.stringify({ error: { message: 'the upstream stream ended without [DONE]', type: 'upstream_error', code: 'upstream_stream_broken' } }))
  return chunks
}
