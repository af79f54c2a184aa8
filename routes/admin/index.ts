import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ENGINE_VERSION, PROMPT_HASH } from '../../src/domain/prompt.js'
import { estimateCost } from '../../src/domain/cost.js'
import { prewarmTop } from '../../src/admin/prewarm-top.js'
import { humanBytes, namespacedMatch, PERIOD_DAYS } from '../../src/admin/pattern.js'
import { ADMIN_RATE_LIMIT } from '../../plugins/rate-limit.js'
import { ErrorSchema } from '../../src/schemas/narrative.js'
import {
  AnalyticsSchema, DeleteCacheSchema, DeleteUserSchema, PatternQuerySchema, PeriodQuerySchema,
  PrewarmBodySchema, PrewarmSchema, StatsSchema, UserParamsSchema
} from '../../src/schemas/admin.js'

const DAY_MS = 86_400_000
const denied = { 401: ErrorSchema, 403: ErrorSchema, 429: ErrorSchema, 503: ErrorSchema }
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
    schema: { tags: ['admin'], security, summary: 'Cache figures of this instance', response: { 200: StatsSchema, ...denied } }
  }, async () => {
    const c = engine.counters
    const info = await breaker.run(() => store.info()).catch(() => ({ keys: 0, memoryUsedBytes: 0 }))
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
      analytics: { recorded: db.buffer.counters.recorded, written: db.buffer.counters.written, dropped: db.buffer.counters.dropped }
    }
  })

  fastify.get('/api/narrative/analytics', {
    ...common,
    schema: { tags: ['admin'], security, summary: 'Requests, hit rate, top systems and cost over a period', querystring: PeriodQuerySchema, response: { 200: AnalyticsSchema, ...denied } }
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
      estimatedCost: estimateCost({ byModel: summary.byModel, totalRequests: summary.totalRequests, repaidGenerations: summary.repaidGenerations, periodDays: days, redisMonthlyUsd: config.redisMonthlyUsd, prices: config.modelPrices }),
      period
    }
  })

  fastify.delete('/api/narrative/user/:userId', {
    ...common,
    schema: { tags: ['admin'], security, summary: 'Delete what is stored about a user (GDPR/CCPA)', params: UserParamsSchema, response: { 200: DeleteUserSchema, ...denied } }
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
    schema: { tags: ['admin'], security, summary: 'Invalidate cached narratives matching a glob, inside the namespace', querystring: PatternQuerySchema, response: { 200: DeleteCacheSchema, 400: ErrorSchema, ...denied } }
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
    schema: { tags: ['admin'], security, summary: 'Generate the most requested profiles that are missing or stale', body: PrewarmBodySchema, response: { 200: PrewarmSchema, ...denied } }
  }, async (request) => {
    const { top = 100, period = '30d', concurrency = 4 } = request.body ?? {}
    return await prewarmTop({ engine, analytics: db.analytics, prefix: config.cachePrefix }, { top, period, concurrency })
  })
}

function round (x: number): number {
  return Math.round(x * 10_000) / 10_000
}

export default routes
