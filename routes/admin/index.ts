import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { adminDenied, adminScope, adminSecurity } from '../admin-scope.ts'
import { ENGINE_VERSION } from '../../src/domain/prompt.ts'
import { estimateCost } from '../../src/domain/cost.ts'
import { prewarmTop } from '../../src/admin/prewarm-top.ts'
import { humanBytes, namespacedMatch, PERIOD_DAYS } from '../../src/admin/pattern.ts'
import { ADMIN_RATE_LIMIT } from '../../plugins/rate-limit.ts'
import { errorResponses } from '../../src/schemas/error.ts'
import { refusedKey } from '../../src/domain/cache-key.ts'
import {
  AnalyticsSchema, AuditPageSchema, AuditQuerySchema, DeleteCacheSchema, HistoryQuerySchema, HistorySchema, DeleteUserSchema, PatternQuerySchema, PeriodQuerySchema,
  PrewarmBodySchema, PrewarmSchema, StatsSchema, UserParamsSchema
} from '../../src/schemas/admin.ts'

const DAY_MS = 86_400_000
const MINUTE_MS = 60_000
const HISTORY_NOTE = 'Requests per minute by how they were answered, from the analytics tables (every instance writes there; rows are written in batches, about a second late). ' +
  'Latency: the analytics record the duration of model calls only, so the percentiles are those of model calls (generationP50Ms, generationP95Ms); ' +
  'the latency of every answer is in Prometheus (narrative_http_request_duration_seconds). ' +
  'refused: 400s of the domain rules; error: failures and 429s of the generation limit. Bodies refused by the schema and 429s of the public rate limit are not in the analytics.'
const denied = adminDenied
const security = adminSecurity

/**
 * Admin routes: rate-limited per IP first (so unauthenticated floods are
 * limited too), then the token, the allowlist and the role; every call,
 * allowed or refused, is written to the audit log.
 */
const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config, engine, store, breaker } = fastify
  const db = fastify.db

  adminScope(fastify)

  const common = { tags: ['admin'], security, config: { rateLimit: ADMIN_RATE_LIMIT } }

  fastify.get('/api/narrative/stats', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getStats', security, summary: 'Cache figures of this instance and of the whole fleet', response: { 200: { ...StatsSchema, description: 'The cache figures of this instance since it started (top level), and of every live instance with their sum (fleet)' }, ...denied } }
  }, async () => {
    const c = engine.counters
    const prompts = fastify.prompts
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
      // What writes today (PROMPT_VERSION, OPENAI_MODEL, PROMPT_CANARY): not the newest prompt file, which may not be the active one.
      promptVersion: prompts.active.version,
      promptHash: prompts.active.hash,
      model: prompts.model,
      canary: prompts.canary === undefined ? null : { version: prompts.canary.prompt.version, percent: prompts.canary.percent },
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

  fastify.get('/api/narrative/history', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getHistory', security, summary: 'Requests per minute by status, refusals and model-call latency, from the analytics tables', querystring: HistoryQuerySchema, response: { 200: { ...HistorySchema, description: 'One bucket per minute, oldest first' }, ...errorResponses([400], { 400: 'minutes is not an integer from 1 to 1440' }), ...denied } }
  }, async (request) => {
    const minutes = Number(request.query.minutes ?? 60)
    const now = Date.now()
    const buckets = await db.analytics.history(now - (minutes - 1) * MINUTE_MS, now, refusedKey(config.cachePrefix))
    return { from: buckets[0].at, to: buckets[buckets.length - 1].at, buckets, note: HISTORY_NOTE }
  })

  fastify.get('/api/narrative/audit', {
    ...common,
    schema: { tags: ['admin'], operationId: 'getAuditLog', security, summary: 'The admin audit log, newest first, a page at a time', querystring: AuditQuerySchema, response: { 200: { ...AuditPageSchema, description: 'One page of the audit log and the cursor of the next' }, ...errorResponses([400], { 400: 'limit is not from 1 to 200, or before is not a positive integer' }), ...denied } }
  }, async (request) => {
    const limit = Number(request.query.limit ?? 50)
    const before = request.query.before === undefined ? undefined : Number(request.query.before)
    // One more than asked: whether an older page exists, without a count.
    const rows = await db.audit.page(limit + 1, before)
    const entries = rows.slice(0, limit)
    return { entries, next: rows.length > limit ? entries[entries.length - 1].id : null }
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
