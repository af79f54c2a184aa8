import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorSchema, NarrativeRequestSchema, NarrativeResponseSchema } from '../../src/schemas/narrative.js'

const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/api/narrative', {
    schema: {
      tags: ['narrative'],
      summary: 'The narrative for a profile, from the cache when it can be',
      description: 'Answers from the cache (hit, stale), the durable tier, or a new generation (miss). The cache status is in `cache.status` and in the `X-Cache` header.',
      body: NarrativeRequestSchema,
      response: {
        200: {
          ...NarrativeResponseSchema,
          headers: { 'X-Cache': { type: 'string', enum: ['HIT', 'STALE', 'DURABLE', 'MISS', 'FALLBACK'] } }
        },
        400: ErrorSchema,
        413: ErrorSchema,
        415: ErrorSchema,
        429: ErrorSchema
      }
    }
  }, async (request, reply) => {
    const { body } = await fastify.narratives.serve(request.body, { clientIp: request.ip })
    reply.header('X-Cache', body.cache.status.toUpperCase())
    return body
  })
}

export default routes
