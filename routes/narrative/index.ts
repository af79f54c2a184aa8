import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorSchema, NarrativeRequestSchema, NarrativeResponseSchema } from '../../src/schemas/narrative.js'
import { noteAnswer, streamNarrative, wantsEventStream } from './stream.js'
import { HitTexts, NARRATIVE_ROUTE, memoryHitFront, memoryHitHook } from './memory-hit.js'
import { installFront } from '../../src/front-door.js'

export interface NarrativeRoutesOptions {
  /** SSE heartbeat interval (default 15 s). */
  heartbeatMs?: number
}

/** `model;dur=…, app;dur=…` in ms: the model call, and the rest of the time spent on the request so far. */
export function serverTiming (modelMs: number, elapsedMs: number): string {
  return `model;dur=${modelMs.toFixed(1)}, app;dur=${Math.max(0, elapsedMs - modelMs).toFixed(1)}`
}

const routes: FastifyPluginAsyncTypebox<NarrativeRoutesOptions> = async (fastify, opts) => {
  const streamOptions = { heartbeatMs: opts.heartbeatMs ?? 15_000 }
  const texts = new HitTexts()
  // A body seen before whose narrative this process holds is answered before
  // Fastify routes it, on a server made by serverOptions; else before parsing.
  installFront(fastify.server, memoryHitFront(fastify, texts))
  fastify.post(NARRATIVE_ROUTE, {
    preParsing: memoryHitHook(fastify, texts),
    schema: {
      tags: ['narrative'],
      summary: 'The narrative for a profile, from the cache when it can be',
      description: 'Answers from the cache (hit, stale), the durable tier, or a new generation (miss). The cache status is in `cache.status` and in the `X-Cache` header.\n\n' +
        'With `Accept: text/event-stream` the answer is Server-Sent Events: `event: meta` (`{status, key}`), then `event: delta` (`{text}`) as the narrative arrives, ' +
        'then `event: done` with the whole JSON body below; `event: error` (`{message}`) if it fails midway. A `: heartbeat` comment comes every 15 s.',
      body: NarrativeRequestSchema,
      response: {
        200: {
          description: 'The narrative, as JSON or (with Accept: text/event-stream) as Server-Sent Events',
          headers: {
            'X-Cache': { type: 'string', enum: ['HIT', 'STALE', 'DURABLE', 'MISS', 'FALLBACK'] },
            'Server-Timing': { type: 'string', description: 'On answers that waited for the model: `model;dur=<ms>, app;dur=<ms>`, the model call (all attempts) and the rest of the time spent on the request' }
          },
          content: {
            'application/json': { schema: NarrativeResponseSchema },
            'text/event-stream': { schema: { type: 'string', description: 'event: meta | delta | done | error, each with a JSON data line' } }
          }
        },
        400: ErrorSchema,
        413: ErrorSchema,
        415: ErrorSchema,
        429: ErrorSchema
      }
    }
  }, async (request, reply) => {
    if (wantsEventStream(request)) return await streamNarrative(fastify, request, request.body, reply, streamOptions)
    let body, resolution
    try {
      ({ body, resolution } = await fastify.narratives.serve(request.body, { clientIp: request.ip, bodyText: request.jsonBodyText }))
    } catch (err) {
      fastify.countAnswer('error')
      throw err
    }
    noteAnswer(fastify, request, body.cache)
    reply.header('X-Cache', body.cache.status.toUpperCase())
    // When this request waited on the model: how long, and how long everything else took.
    if (resolution.generationMs !== undefined) reply.header('Server-Timing', serverTiming(resolution.generationMs, reply.elapsedTime))
    return body
  })
}

export default routes
