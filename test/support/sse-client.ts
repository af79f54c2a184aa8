// A minimal Server-Sent Events reader over fetch, for tests that need a real
// HTTP client reading a stream as it arrives (inject() buffers everything).

export interface SseEvent { event: string, data: unknown, at: number }

export interface SseResult {
  status: number
  headers: Headers
  events: SseEvent[]
  /** Comment lines (": heartbeat"). */
  comments: string[]
  /** Concatenated `delta` texts. */
  text: string
}

export async function postSse (url: string, body: unknown, opts: { signal?: AbortSignal, onEvent?: (e: SseEvent) => void, stopAfter?: (e: SseEvent) => boolean } = {}): Promise<SseResult> {
  const started = Date.now()
  const controller = new AbortController()
  const signal = opts.signal === undefined ? controller.signal : AbortSignal.any([opts.signal, controller.signal])
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify(body), signal })
  const result: SseResult = { status: res.status, headers: res.headers, events: [], comments: [], text: '' }
  if (res.body === null) return result
  const decoder = new TextDecoder()
  let buffer = ''
  try {
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true })
      let end: number
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let event = 'message'
        const data: string[] = []
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) result.comments.push(line.slice(1).trim())
          else if (line.startsWith('event:')) event = line.slice(6).trim()
          else if (line.startsWith('data:')) data.push(line.slice(5).trim())
        }
        if (data.length === 0) continue
        const e: SseEvent = { event, data: JSON.parse(data.join('\n')), at: Date.now() - started }
        result.events.push(e)
        if (event === 'delta') result.text += (e.data as { text: string }).text
        opts.onEvent?.(e)
        if (opts.stopAfter?.(e) === true) {
          controller.abort()
          return result
        }
      }
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err
  }
  return result
}
