import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { NarrativeRequestSchema, NarrativeResponseSchema } from '../../src/schemas/narrative.ts'
import { errorResponses } from '../../src/schemas/error.ts'
import { OpenStreams, noteAnswer, streamNarrative, wantsEventStream } from './stream.ts'
import { HitTexts, NARRATIVE_ROUTE, memoryHitHook } from './memory-hit.ts'
import cors from '@fastify/cors'
import { Type } from '@sinclair/typebox'
import { narrativeCacheRequest } from './cache-control.ts'

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
        callback(null, publicRoute ? { origin: origins, methods: ['POST'], allowedHeaders: ['content-type', 'accept', 'cache-control', 'authorization'], exposedHeaders: ['x-cache', 'age', 'server-timing', 'retry-after'], maxAge: 600 } : { origin: false })
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
      headers: Type.Object({
        'cache-control': Type.Optional(Type.String({
          description: 'HTTP\'s request directives: `max-age=N` (only an entry younger than N s), `max-stale=N` (at most N s past its freshness), ' +
            '`only-if-cached` (504 rather than a model call), `stale-if-error=N` (with max-age or max-stale: the older entry rather than the template when the model fails), ' +
            '`no-store` (the answer says `Cache-Control: no-store`) for anyone; an entry too old for max-age or max-stale is written again only for a caller with the refresh right, a 504 for others. ' +
            '`no-cache` (ask the model again, still once for concurrent identical requests) needs the refresh right: `Authorization: Bearer <admin token>` or `Bearer <API key with refresh>`; 403 without it, 401 when the credentials are not valid.',
          examples: ['max-age=3600', 'no-cache', 'only-if-cached']
        }))
      }),
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
            Age: { type: 'integer', description: 'Seconds since the narrative was written (as cache.ageSeconds)' },
            'Server-Timing': { type: 'string', description: 'On answers that waited for the model: `model;dur=<ms>, app;dur=<ms>`, the model call (all attempts) and the rest of the time spent on the request' }
          },
          content: {
            'application/json': { schema: NarrativeResponseSchema }
          }
        },
        ...errorResponses([400, 401, 403, 413, 415, 429, 500, 503, 504], {
          400: 'The body is invalid: the message names the field, or the profile breaks a rule (e.g. the primary system missing from percentages); or Cache-Control is malformed',
          401: 'Cache-Control asked for a refresh with credentials that are not valid (an admin token or an API key): the message says why',
          403: 'Cache-Control: no-cache without the refresh right (an admin token, or an API key with refresh); or an admin token from outside the allowlist',
          504: 'Cache-Control: only-if-cached and nothing is cached; or max-age / max-stale refused the entry there is, and the caller may not have it written again',
          429: 'This client caused too many new narratives this minute (cached narratives are never limited): Retry-After says when to try again',
          503: 'The server is closing, or no narrative could be made (neither the model nor the template)'
        })
      }
    }
  }, async (request, reply) => {
    const cache = await narrativeCacheRequest(fastify, request, reply)
    if (cache.noStore) reply.header('Cache-Control', 'no-store')
    if (wantsEventStream(request)) return await streamNarrative(fastify, request, request.body, reply, streamOptions, cache.options, cache.noStore)
    let body, resolution
    try {
      ({ body, resolution } = await fastify.narratives.serve(request.body, { clientIp: request.ip, bodyText: request.jsonBodyText }, cache.options))
    } catch (err) {
      fastify.countAnswer('error')
      throw err
    }
    noteAnswer(fastify, request, body.cache)
    reply.header('X-Cache', body.cache.status.toUpperCase())
    reply.header('Age', String(body.cache.ageSeconds))
    // When this request waited on the model: how long, and how long everything else took.
    if (resolution.generationMs !== undefined) reply.header('Server-Timing', serverTiming(resolution.generationMs, reply.elapsedTime))
    return body
  })
}

export default routes
