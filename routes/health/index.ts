import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { errorResponses } from '../../src/schemas/error.ts'

const PartState = Type.Unsafe<string>({ type: 'string', description: 'up, down, degraded, embedded, or starting (the database is still opening: answers skip it meanwhile)' })
const ReadySchema = Type.Object({
  status: Type.Unsafe<'ready' | 'starting' | 'closing'>({ type: 'string', enum: ['ready', 'starting', 'closing'] }),
  redis: PartState,
  breaker: Type.Unsafe<'closed' | 'open' | 'half-open'>({ type: 'string', enum: ['closed', 'open', 'half-open'] }),
  database: PartState,
  narrator: Type.String({ description: 'the configured narrator: a model name, or "template"' })
})

const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/health', {
    schema: {
      tags: ['operations'],
      operationId: 'health',
      security: [],
      summary: 'Liveness: 200 while the process serves',
      response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'The process serves requests' }), ...errorResponses([500]) }
    }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/ready', {
    schema: {
      tags: ['operations'],
      operationId: 'ready',
      security: [],
      summary: 'Readiness, with the state of each dependency',
      description: 'Degraded dependencies are named, not fatal: 200 while requests can be served, 503 while starting or closing.',
      response: {
        200: { ...ReadySchema, description: 'Ready: requests can be served (a degraded dependency is named, not fatal)' },
        500: errorResponses([500])[500],
        // Not the error body: the same readiness figures, with status starting or closing.
        503: { ...ReadySchema, description: 'Not ready: starting or closing (the body says which)' }
      }
    }
  }, async (_request, reply) => {
    const { store, breaker, narrator } = fastify
    let redis = 'embedded'
    if (store.kind !== 'memory') {
      redis = breaker.state === 'open' ? 'down' : 'up'
      if (breaker.state !== 'open') {
        redis = await store.ping().then(() => 'up', () => 'down')
      }
    }
    const database = await fastify.db.state()
    const closing = fastify.isClosing()
    const body = { status: closing ? 'closing' as const : 'ready' as const, redis, breaker: breaker.state, database, narrator: narrator.engine }
    return await reply.code(closing ? 503 : 200).send(body)
  })
}

export default routes
