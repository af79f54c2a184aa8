import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { NarrativeRequestSchema, NarrativeResponseSchema } from '../../src/schemas/narrative.ts'
import { errorResponses } from '../../src/schemas/error.ts'
import { OpenStreams, noteAnswer, streamNarrative, wantsEventStream } from './stream.ts'
import { HitTexts, NARRATIVE_ROUTE, memoryHitHook } from './memory-hit.ts'
import cors from '@fastify/cors'

export interface NarrativeRoutesOptions {
  /** SSE heartbeat interval (default 15 s). */
  heartbeatMs?: number
}

/** `model;dur=…, app;dur=…` in ms: the model call, and the rest of the time spent on the request so far. */
export function serverTiming (modelMs: number, elapsedMs: number): string {
  return `model;dur=${modelMs.toFixed(1)}, app;dur=${Math.max(0, elapsedMs - modelMs).toFixed(1)}`
}

const routes: FastifyPluginAsyncTypebox<NarrativeRoutesOptions> = async (fastify, opts) => {
  const streamOptions = { heartbeatMs: opts.heartbeatMs ?? 15_000, open: new OpenStreams() }
  // Closing: each open event stream ends with an error event at once.
  fastify.addHook('preClose', async () => { streamOptions.open.endAll() })
  const texts = new HitTexts()
  // Browsers may call the public route from CORS_ORIGINS, and only that route:
  // the plugin's preflight route is a wildcard, so the delegator answers
  // `origin: false` (no CORS) for every other path, the admin routes included.
  const origins = fastify.config.corsOrigins
  if (origins.length > 0) {
    await fastify.register(cors, {
      delegator: (request, callback) => {
        const publicRoute = request.url.split('?')[0] === NARRATIVE_ROUTE
        callback(null, publicRoute ? { origin: origins, methods: ['POST'], allowedHeaders: ['content-type', 'accept'], exposedHeaders: ['x-cache', 'server-timing', 'retry-after'], maxAge: 600 } : { origin: false })
      }
    })
  }
  // A body seen before whose narrative this process holds is answered by the
  // route's preParsing hook, before parsing and validation (memory-hit.ts).
  fastify.post(NARRATIVE_ROUTE, {
    preParsing: memoryHitHook(fastify, texts, fastify.initialConfig.bodyLimit ?? 1024 * 1024),
    schema: {
      tags: ['narrative'],
      operationId: 'getNarrative',
      security: [],
      summary: 'The narrative for a profile, from the cache when it can be',
      description: 'Answers from the cache (hit, stale), the durable tier, or a new generation (miss). The cache status is in `cache.status` and in the `X-Cache` header.\n\n' +
        'With `Accept: text/event-stream` the answer is Server-Sent Events: `event: meta` (`{status, key}`), then `event: delta` (`{text}`) as the narrative arrives, ' +
        'then `event: done` with the whole JSON body below; `event: error` (`{message}`) if it fails midway. A `: heartbeat` comment comes every 15 s.\n\n' +
        'The 200 lists only `application/json`, so that generated clients type the answer as the JSON body (a second media type makes them type it as a string); ' +
        'the stream is described here and in the `x-event-stream` extension of this operation.',
      body: NarrativeRequestSchema,
      // The Server-Sent Events answer, for readers and tools (an OpenAPI extension: no generator types it as the 200).
      'x-event-stream': {
        contentType: 'text/event-stream; charset=utf-8',
        requestedWith: 'Accept: text/event-stream',
        events: {
          meta: '{"status": <cache status>, "key": <cache key>}, first',
          delta: '{"text": <the next part of the narrative>}, as it arrives',
          done: 'the whole JSON body of the application/json answer, last',
          error: '{"message": <why>}, if it fails midway (the stream then ends)'
        },
        heartbeat: '": heartbeat" comment line every 15 s'
      },
      response: {
        200: {
          description: 'The narrative (with `Accept: text/event-stream`: Server-Sent Events, see the description above and `x-event-stream`)',
          headers: {
            'X-Cache': { type: 'string', enum: ['HIT', 'STALE', 'DURABLE', 'MISS', 'FALLBACK'] },
            'Server-Timing': { type: 'string', description: 'On answers that waited for the model: `model;dur=<ms>, app;dur=<ms>`, the model call (all attempts) and the rest of the time spent on the request' }
          },
          content: {
            'application/json': { schema: NarrativeResponseSchema }
          }
        },
        ...errorResponses([400, 413, 415, 429, 500, 503], {
          400: 'The body is invalid: the message names the field, or the profile breaks a rule (e.g. the primary system missing from percentages)',
          429: 'This client caused too many new narratives this minute (cached narratives are never limited): Retry-After says when to try again',
          503: 'The server is closing, or no narrative could be made (neither the model nor the template)'
        })
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
