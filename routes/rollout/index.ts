import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { adminDenied, adminScope, adminSecurity } from '../admin-scope.ts'
import { ADMIN_RATE_LIMIT } from '../../plugins/rate-limit.ts'
import { RolloutPausedSchema, RolloutStatusSchema } from '../../src/schemas/rollout.ts'

const denied = adminDenied
const security = adminSecurity

/**
 * The rollout of a prompt version and the scheduled pre-warm (docs/rollout.md):
 * admin only, every call audited, as the other admin routes.
 */
const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { rollout, config } = fastify

  adminScope(fastify)

  const common = { config: { rateLimit: ADMIN_RATE_LIMIT } }

  fastify.get('/api/narrative/rollout', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getRollout', security, summary: 'The prompt rollout: active and previous versions, hot keys on each, rate, time to finish; the scheduled pre-warm', response: { 200: { ...RolloutStatusSchema, description: 'Where the rollout stands (hot keys: the most requested of the last 7 days)' }, ...denied } }
  }, async () => {
    const status = await rollout.status()
    const scheduled = fastify.prewarmSchedule
    const prewarm = scheduled === undefined ? null : { ...scheduled.status(), maxCalls: config.prompts.prewarmMaxCalls }
    return { ...status, prewarm }
  })

  fastify.post('/api/narrative/rollout/pause', {
    ...common,
    schema: { tags: ['admin'], operationId: 'pauseRollout', security, summary: 'Pause the rollout\'s background writes on every instance (earlier versions keep answering)', response: { 200: { ...RolloutPausedSchema, description: 'Paused' }, ...denied } }
  }, async (request) => {
    await rollout.pause()
    request.log.info('rollout paused')
    return { paused: true }
  })

  fastify.post('/api/narrative/rollout/resume', {
    ...common,
    schema: { tags: ['admin'], operationId: 'resumeRollout', security, summary: 'Resume the rollout\'s background writes on every instance', response: { 200: { ...RolloutPausedSchema, description: 'Resumed' }, ...denied } }
  }, async (request) => {
    await rollout.resume()
    request.log.info('rollout resumed')
    return { paused: false }
  })
}

export default routes
