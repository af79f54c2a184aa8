import { PassThrough } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { chunkText, narrativeText } from '../../src/domain/narrative-text.ts'
import type { CacheStatus, NarrativeRequest } from '../../src/schemas/narrative.ts'
import type { NarrativeCacheOptions } from '../../src/narrative/service.ts'

export interface StreamOptions {
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: number
  /** The streams open now, ended with an `error` event when the server closes. */
  open: OpenStreams
}

/**
 * The event streams being written, so that closing the server ends each with
 * an `error` event at once rather than waiting on it (a stream lasts as long
 * as its generation, and a client may hold it open after).
 */
export class OpenStreams {
  private readonly ends = new Set<() => void>()

  add (end: () => void): () => void {
    this.ends.add(end)
    return () => { this.ends.delete(end) }
  }

  endAll (): void {
    for (const end of this.ends) end()
    this.ends.clear()
  }
}

/**
 * Notes what a request was answered with: the metrics counter, and the cache
 * status and key that plugins/metrics.ts puts in the request's log line.
 */
export function noteAnswer (fastify: FastifyInstance, request: FastifyRequest, cache: { status: CacheStatus, key: string }): void {
  request.cacheStatus = cache.status
  request.cacheKey = cache.key
  fastify.countAnswer(cache.status)
}

/** True when the client asked for Server-Sent Events. */
export function wantsEventStream (request: FastifyRequest): boolean {
  return acceptsEventStream(request.headers.accept)
}

/** True when an Accept header asks for Server-Sent Events (`text/event-stream`, unless at `q=0`: refused). */
export function acceptsEventStream (accept: string | undefined): boolean {
  // Most requests never mention it: one regular expression, no split (this runs on every hit).
  if (accept === undefined || !/event-stream/i.test(accept)) return false
  return accept.split(',').some(part => {
    const [type, ...params] = part.split(';').map(p => p.trim().toLowerCase())
    return type === 'text/event-stream' && !params.some(p => /^q\s*=\s*0(\.0{0,3})?$/.test(p))
  })
}

/**
 * POST /api/narrative as Server-Sent Events: `meta`, `delta`s, then `done`
 * (or `error`). Nothing is sent until the first event is known, so a refusal
 * (400, 429) before that is still an ordinary JSON error. A hit streams at
 * once; a miss built in this process streams the model's text as it arrives,
 * and a late joiner first gets what was written so far. A client that leaves
 * stops only its own stream: the generation goes on and is cached.
 */
export async function streamNarrative (fastify: FastifyInstance, request: FastifyRequest, body: NarrativeRequest, reply: FastifyReply, options: StreamOptions, cache: NarrativeCacheOptions = {}, noStore = false): Promise<FastifyReply> {
  let job
  try {
    job = fastify.narratives.prepare(body, { clientIp: request.ip, bodyText: request.jsonBodyText })
  } catch (err) {
    fastify.countAnswer('error')
    throw err
  }
  let stream: PassThrough | undefined
  let heartbeat: NodeJS.Timeout | undefined
  let shown = ''
  let gone = false
  let forget: (() => void) | undefined

  const stop = (): void => {
    gone = true
    clearInterval(heartbeat)
    forget?.()
  }
  // The response's close, not the request's: a request closes as soon as its body is read.
  reply.raw.on('close', () => { if (!reply.raw.writableFinished) stop() })

  const write = (event: string, data: unknown): void => {
    if (gone || stream === undefined) return
    stream.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
  }
  // Age and Cache-Control as the JSON answer has them (`no-store` when the request asked for it).
  const start = (status: CacheStatus, ageSeconds: number): void => {
    if (stream !== undefined) return
    stream = new PassThrough()
    reply
      .header('Content-Type', 'text/event-stream; charset=utf-8')
      .header('Cache-Control', noStore ? 'no-store, no-transform' : 'no-cache, no-transform')
      .header('Age', String(ageSeconds))
      .header('X-Accel-Buffering', 'no')
      .header('X-Cache', status.toUpperCase())
    reply.send(stream)
    heartbeat = setInterval(() => { if (!gone) stream?.write(': heartbeat\n\n') }, options.heartbeatMs)
    heartbeat.unref()
    // The server closing ends the stream now: the generation goes on and is cached.
    forget = options.open.add(() => {
      write('error', { message: 'the server is closing; ask again for the narrative (it is still being cached)' })
      stop()
      stream?.end()
    })
    write('meta', { status, key: job.key })
  }
  const delta = (text: string): void => {
    if (text === '') return
    shown += text
    write('delta', { text })
  }

  // Text from a build in this process, piece by piece as it is written (first what was written before we watched).
  const unwatch = fastify.narratives.progress.watch(job.key, newText => {
    start('miss', 0)
    delta(newText)
  })

  try {
    const { body: answer } = await fastify.narratives.execute(job, body.userId, cache)
    unwatch()
    noteAnswer(fastify, request, answer.cache)
    const text = narrativeText(answer.narrative)
    if (answer.cache.status === 'fallback' && shown !== '') {
      // The model broke after its text began: say so; nothing was cached.
      write('error', { message: 'the model stopped midway; nothing was cached, the next request will try again' })
    } else {
      start(answer.cache.status, answer.cache.ageSeconds)
      if (text.startsWith(shown)) for (const piece of chunkText(text.slice(shown.length))) delta(piece)
      write('done', answer)
    }
  } catch (err) {
    unwatch()
    fastify.countAnswer('error')
    if (stream === undefined) throw err
    request.log.warn({ err }, 'narrative stream failed')
    write('error', { message: 'the narrative could not be produced' })
  } finally {
    clearInterval(heartbeat)
    forget?.()
    stream?.end()
  }
  return reply
}
