import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { errorResponses } from '../../src/schemas/error.ts'
import { SHED_RETRY_AFTER_SECONDS } from '../../plugins/load-shedding.ts'

const PartState = Type.Unsafe<string>({ type: 'string', description: 'up, down, degraded, embedded, or starting (the database is still opening: answers skip it meanwhile)' })
const ReadySchema = Type.Object({
  status: Type.Unsafe<'ready' | 'starting' | 'closing' | 'overloaded'>({ type: 'string', enum: ['ready', 'starting', 'closing', 'overloaded'] }),
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
      description: 'Degraded dependencies are named, not fatal: 200 while requests can be served, 503 while starting, closing, or overloaded (past a load-shedding threshold: other routes then answer 503 with Retry-After).',
      response: {
        200: { ...ReadySchema, description: 'Ready: requests can be served (a degraded dependency is named, not fatal)' },
        500: errorResponses([500])[500],
        // Not the error body: the same readiness figures, with status starting or closing.
        503: { ...ReadySchema, description: 'Not ready: starting, closing or overloaded (the body says which)' }
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
    const status = fastify.isClosing() ? 'closing' as const : fastify.isUnderPressure() ? 'overloaded' as const : 'ready' as const
    const body = { status, redis, breaker: breaker.state, database, narrator: narrator.engine }
    if (status === 'overloaded') reply.header('Retry-After', String(SHED_RETRY_AFTER_SECONDS))
    return await reply.code(status === 'ready' ? 200 : 503).send(body)
  })
}

export default routes
