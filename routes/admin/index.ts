import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ENGINE_VERSION, PROMPT_HASH } from '../../src/domain/prompt.ts'
import { estimateCost } from '../../src/domain/cost.ts'
import { prewarmTop } from '../../src/admin/prewarm-top.ts'
import { humanBytes, namespacedMatch, PERIOD_DAYS } from '../../src/admin/pattern.ts'
import { ADMIN_RATE_LIMIT } from '../../plugins/rate-limit.ts'
import { errorResponses } from '../../src/schemas/error.ts'
import {
  AnalyticsSchema, DeleteCacheSchema, DeleteUserSchema, PatternQuerySchema, PeriodQuerySchema,
  PrewarmBodySchema, PrewarmSchema, StatsSchema, UserParamsSchema
} from '../../src/schemas/admin.ts'

const DAY_MS = 86_400_000
/** What every admin route may refuse with: no token, not allowed, too many calls, the rate-limit store down; and 500. */
const denied = errorResponses([401, 403, 429, 500, 503], {
  429: 'Too many admin calls from this address: Retry-After says when to try again',
  503: 'The rate-limit store (Redis) is unavailable: admin routes are closed until it is back'
})
const security = [{ bearerAuth: [] }]

/**
 * Admin routes: rate-limited per IP first (so unauthenticated floods are
 * limited too), then the token, the allowlist and the role; every call,
 * allowed or refused, is written to the audit log.
 */
const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, engine, store, breaker } = fastify
  const db = fastify.db

  fastify.addHook('preValidation', fastify.requireAdmin)
  fastify.addHook('onResponse', async (request, reply) => {
    const status = reply.statusCode
    const entry = {
      actor: status < 400 || status === 403 ? (request.user?.sub ?? null) : null,
      action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      ip: request.ip,
      outcome: status < 400 ? 'allowed' as const : 'denied' as const,
      status
    }
    db.audit.insert(entry).catch(err => request.log.warn({ err: (err as Error).message, audit: entry }, 'audit write failed'))
  })

  const common = { tags: ['admin'], security, config: { rateLimit: ADMIN_RATE_LIMIT } }

  fastify.get('/api/narrative/stats', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getStats', security, summary: 'Cache figures of this instance and of the whole fleet', response: { 200: { ...StatsSchema, description: 'The cache figures of this instance since it started (top level), and of every live instance with their sum (fleet)' }, ...denied } }
  }, async () => {
    const c = engine.counters
    const [info, fleet] = await Promise.all([
      breaker.run(() => store.info()).catch(() => ({ keys: 0, memoryUsedBytes: 0 })),
      fastify.fleet.view()
    ])
    const answered = c.hits + c.staleHits + c.durableHits + c.misses + c.fallbacks
    return {
      keys: info.keys,
      memoryUsed: humanBytes(info.memoryUsedBytes),
      hitRate: answered === 0 ? 0 : round((c.hits + c.staleHits + c.durableHits) / answered),
      hits: c.hits,
      staleHits: c.staleHits,
      durableHits: c.durableHits,
      misses: c.misses,
      fallbacks: c.fallbacks,
      engineVersion: ENGINE_VERSION,
      promptHash: PROMPT_HASH,
      ttlDays: config.ttlSeconds / 86_400,
      staleDays: config.staleSeconds / 86_400,
      store: store.kind,
      breaker: breaker.state,
      refresh: { started: c.refreshStarted, skippedLocked: c.refreshSkippedLocked, succeeded: c.refreshSucceeded, failed: c.refreshFailed },
      analytics: { recorded: db.buffer.counters.recorded, written: db.buffer.counters.written, dropped: db.buffer.counters.dropped },
      instance: fastify.fleet.id,
      fleet
    }
  })

  fastify.get('/api/narrative/analytics', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getAnalytics', security, summary: 'Requests, hit rate, top systems and cost over a period', querystring: PeriodQuerySchema, response: { 200: { ...AnalyticsSchema, description: 'Figures over the period, from the analytics the server records' }, ...errorResponses([400], { 400: 'The period is not one of 1d, 7d, 30d' }), ...denied } }
  }, async (request) => {
    const period = request.query.period ?? '30d'
    const days = PERIOD_DAYS[period]
    const since = Date.now() - days * DAY_MS
    const [summary, topSystems] = await Promise.all([db.analytics.summary(since), db.analytics.topSystems(since, 10)])
    return {
      totalRequests: summary.totalRequests,
      cacheHits: summary.cacheHits,
      cacheMisses: summary.cacheMisses,
      fallbacks: summary.fallbacks,
      hitRate: summary.totalRequests === 0 ? 0 : round(summary.cacheHits / summary.totalRequests),
      generations: summary.generations,
      repaidGenerations: summary.repaidGenerations,
      topSystems,
      avgGenerationTime: Math.round(summary.avgGenerationTimeMs),
      tokens: { prompt: summary.promptTokens, completion: summary.completionTokens },
      estimatedCost: estimateCost({ byModel: summary.byModel, totalRequests: summary.totalRequests, repaidGenerations: summary.repaidGenerations, periodDays: days, redisMonthlyUsd: config.redisMonthlyUsd, redisInUse: store.kind !== 'memory', prices: config.modelPrices }),
      period
    }
  })

  fastify.delete('/api/narrative/user/:userId', {
    ...common,
    schema: { tags: ['admin'], operationId: 'deleteUserData', security, summary: 'Delete what is stored about a user (GDPR/CCPA)', params: UserParamsSchema, response: { 200: { ...DeleteUserSchema, description: 'What was deleted, and why no cached narrative was' }, ...errorResponses([400], { 400: 'The userId is empty or longer than 64 characters' }), ...denied } }
  }, async (request) => {
    // Events still buffered in memory first, so none of them lands after the delete.
    const buffered = await db.buffer.discardUser(request.params.userId)
    const { analyticsRows, indexRows } = await db.analytics.deleteUser(request.params.userId)
    return {
      deleted_cache_entries: 0,
      deleted_analytics_rows: analyticsRows + buffered,
      deleted_index_entries: indexRows,
      rationale: 'Cached narratives are keyed by a hash of the profile, hold no userId and are shared by every user with that profile, so none is deleted. ' +
        'The user\'s analytics rows and their per-user index of requested keys were deleted.'
    }
  })

  fastify.delete('/api/narrative/cache', {
    ...common,
    schema: { tags: ['admin'], operationId: 'invalidateCache', security, summary: 'Invalidate cached narratives matching a glob, inside the namespace', querystring: PatternQuerySchema, response: { 200: { ...DeleteCacheSchema, description: 'How many entries were deleted, and the glob used' }, ...errorResponses([400], { 400: 'The pattern is missing or has characters other than letters, digits, : @ . _ - * ?' }), ...denied } }
  }, async (request) => {
    const match = namespacedMatch(config.cachePrefix, request.query.pattern)
    // The durable tier too: otherwise the next request would bring the old entry back.
    const [deleted, deletedDurable] = await Promise.all([
      breaker.run(() => store.scanDelete(match, 1000)),
      db.narratives.deleteMatching(match)
    ])
    // And every instance's in-process tier, over pub/sub.
    await engine.invalidate({ pattern: match })
    request.log.info({ match, deleted, deletedDurable }, 'cache entries invalidated')
    return { deleted, deletedDurable, match }
  })

  fastify.post('/api/narrative/prewarm', {
    ...common,
    schema: { tags: ['admin'], operationId: 'prewarm', security, summary: 'Generate the most requested profiles that are missing or stale', body: PrewarmBodySchema, response: { 200: { ...PrewarmSchema, description: 'How many narratives were generated, skipped (already fresh) and failed' }, ...errorResponses([400, 413, 415]), ...denied } }
  }, async (request) => {
    const { top = 100, period = '30d', concurrency = 4 } = request.body ?? {}
    const jobOf = fastify.narratives.storedJob.bind(fastify.narratives)
    const onRefused = (key: string, reason: string): void => { request.log.info({ key, reason }, 'pre-warm refused a stored profile') }
    return await prewarmTop({ warmer: fastify.narratives, analytics: db.analytics, jobOf, onRefused }, { top, period, concurrency })
  })
}

function round (x: number): number {
  return Math.round(x * 10_000) / 10_000
}

export default routes
