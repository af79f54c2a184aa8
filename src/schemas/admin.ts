import { Type } from '@sinclair/typebox'
import { USER_ID_DESCRIPTION, USER_ID_PATTERN } from './narrative.ts'

const figures = {
  hits: Type.Integer(),
  staleHits: Type.Integer(),
  durableHits: Type.Integer(),
  misses: Type.Integer(),
  fallbacks: Type.Integer(),
  generations: Type.Integer({ description: 'model calls, refreshes included' }),
  refreshStarted: Type.Integer(),
  refreshSkippedLocked: Type.Integer(),
  refreshSucceeded: Type.Integer(),
  refreshFailed: Type.Integer(),
  analyticsRecorded: Type.Integer(),
  analyticsWritten: Type.Integer(),
  analyticsDropped: Type.Integer()
}

export const FleetViewSchema = Type.Object({
  source: Type.Union([Type.Literal('redis'), Type.Literal('local')], { description: 'redis: every instance reporting through Redis; local: this instance alone (no Redis, or it did not answer)' }),
  instances: Type.Array(Type.Object({
    id: Type.String(),
    host: Type.String(),
    pid: Type.Integer(),
    startedAt: Type.Integer({ description: 'ms since the epoch' }),
    reportedAt: Type.Integer({ description: 'ms since the epoch; an instance silent for 15 s leaves the list' }),
    breaker: Type.String(),
    self: Type.Boolean({ description: 'true for the instance that answered' }),
    ...figures
  }), { description: 'every live instance, the one that answered first' }),
  total: Type.Object({ ...figures, instances: Type.Integer(), hitRate: Type.Number() }, { description: 'the sum over the live instances' })
}, { description: 'Every live instance (each reports to Redis every 5 s, with a 15 s expiry) and their sum' })

export const StatsSchema = Type.Object({
  keys: Type.Integer({ description: 'keys in the cache store (all of the Redis database, locks included)' }),
  memoryUsed: Type.String({ description: 'memory the store reports, e.g. "2.4M"' }),
  hitRate: Type.Number({ description: '(hits + staleHits + durableHits) / answered requests, this instance since it started' }),
  hits: Type.Integer(),
  staleHits: Type.Integer(),
  durableHits: Type.Integer(),
  misses: Type.Integer(),
  fallbacks: Type.Integer(),
  engineVersion: Type.String(),
  promptVersion: Type.String({ description: 'PROMPT_VERSION: the prompt version that writes every key (but the canary\'s)' }),
  promptHash: Type.String({ description: 'the active prompt version\'s hash (part of its keys)' }),
  model: Type.String({ description: 'OPENAI_MODEL: the model that writes (part of every key), or "template" without one' }),
  canary: Type.Union([Type.Object({ version: Type.String(), percent: Type.Number() }), Type.Null()], { description: 'PROMPT_CANARY: the version that writes a stable share of keys, or null' }),
  ttlDays: Type.Number(),
  staleDays: Type.Number(),
  store: Type.String({ description: 'memory, redis or cluster' }),
  breaker: Type.String({ description: 'closed, open or half-open' }),
  refresh: Type.Object({ started: Type.Integer(), skippedLocked: Type.Integer(), succeeded: Type.Integer(), failed: Type.Integer() }),
  analytics: Type.Object({ recorded: Type.Integer(), written: Type.Integer(), dropped: Type.Integer() }),
  instance: Type.String({ description: 'the id of the instance that answered (host:pid:random)' }),
  fleet: FleetViewSchema
})

export const PeriodQuerySchema = Type.Object({
  period: Type.Optional(Type.Unsafe<'1d' | '7d' | '30d'>({ type: 'string', enum: ['1d', '7d', '30d'], default: '30d' }))
}, { additionalProperties: false })

export const AnalyticsSchema = Type.Object({
  totalRequests: Type.Integer(),
  cacheHits: Type.Integer({ description: 'hit + stale + durable' }),
  cacheMisses: Type.Integer(),
  fallbacks: Type.Integer(),
  hitRate: Type.Number(),
  generations: Type.Integer({ description: 'model calls, refreshes included' }),
  repaidGenerations: Type.Integer({ description: 'of those, generations of a narrative the durable tier already held: the model paid twice for it' }),
  topSystems: Type.Array(Type.Object({ system: Type.String(), count: Type.Integer() })),
  avgGenerationTime: Type.Number({ description: 'milliseconds' }),
  tokens: Type.Object({ prompt: Type.Integer(), completion: Type.Integer() }),
  estimatedCost: Type.Object({
    openai: Type.Number({ description: 'USD: tokens times the model price' }),
    redis: Type.Number({ description: 'USD: REDIS_MONTHLY_COST_USD prorated over the period; 0 with the in-process store (no Redis)' }),
    total: Type.Number(),
    withoutCache: Type.Number({ description: 'USD: one model call per request at the average cost per call' }),
    saved: Type.Number({ description: 'withoutCache - total' }),
    repaid: Type.Number({ description: 'USD: the re-paid generations at the average cost per call (included in openai)' })
  }),
  period: Type.String()
})

export const UserParamsSchema = Type.Object({
  userId: Type.String({ minLength: 1, maxLength: 64, pattern: USER_ID_PATTERN, description: `${USER_ID_DESCRIPTION} In the path, percent-encode what a URL cannot carry as is (\`/\` is %2F, \`?\` is %3F, \`#\` is %23); a \`%\` that starts no %XX escape is taken as itself.` })
})

export const DeleteUserSchema = Type.Object({
  deleted_cache_entries: Type.Integer(),
  deleted_analytics_rows: Type.Integer(),
  deleted_index_entries: Type.Integer(),
  rationale: Type.String()
})

export const PatternQuerySchema = Type.Object({
  pattern: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9:@._*?-]+$', description: 'a Redis glob of letters, digits, : @ . _ - * ?; confined to the namespace' })
}, { additionalProperties: false })

export const DeleteCacheSchema = Type.Object({
  deleted: Type.Integer({ description: 'keys unlinked from the cache store' }),
  deletedDurable: Type.Integer({ description: 'rows deleted from the durable tier' }),
  match: Type.String({ description: 'the glob actually used, namespace included' })
})

export const PrewarmBodySchema = Type.Object({
  top: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  period: Type.Optional(Type.Unsafe<'1d' | '7d' | '30d'>({ type: 'string', enum: ['1d', '7d', '30d'], default: '30d' })),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, default: 4 }))
}, { additionalProperties: false })

export const PrewarmSchema = Type.Object({
  warmed: Type.Integer(),
  skipped: Type.Integer(),
  failed: Type.Integer(),
  refused: Type.Integer({ description: 'stored profiles that today\'s rules, SYSTEMS or LOCALES refuse: never sent to the model' })
})

export const HistoryQuerySchema = Type.Object({
  // Query strings are not coerced (src/app.ts): the ranges are written as patterns.
  minutes: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440)$', default: '60', description: 'how many minutes back, the current one included: 1 to 1440' }))
}, { additionalProperties: false })

const count = (description: string) => Type.Integer({ minimum: 0, description })

export const HistorySchema = Type.Object({
  from: Type.Integer({ description: 'the first minute\'s start, ms since the epoch' }),
  to: Type.Integer({ description: 'the last minute\'s start (the current minute, still filling), ms since the epoch' }),
  buckets: Type.Array(Type.Object({
    at: Type.Integer({ description: 'the minute\'s start, ms since the epoch' }),
    hit: count('answered from the cache store'),
    stale: count('answered stale, refreshed in the background'),
    durable: count('answered from the durable tier (PostgreSQL)'),
    miss: count('built (or waited for) then answered'),
    fallback: count('answered by the template narrator'),
    error: count('failed: 5xx, and 429s of the generation limit'),
    refused: count('refused before any work: 400s of the domain rules'),
    generations: count('model calls started, refreshes included'),
    generationP50Ms: Type.Union([Type.Number(), Type.Null()], { description: 'median duration of the model calls, ms; null without any' }),
    generationP95Ms: Type.Union([Type.Number(), Type.Null()], { description: '95th percentile of the model calls\' durations, ms; null without any' })
  }), { description: 'one per minute, oldest first, empty minutes included' }),
  note: Type.String({ description: 'what the figures are made of, and what they leave out' })
}, { description: 'Requests per minute from the analytics tables (the whole fleet: every instance writes there)' })

export const AuditQuerySchema = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]?|1[0-9]{2}|200)$', default: '50', description: 'entries per page: 1 to 200' })),
  before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,14}$', description: 'an entry id: only older entries (the `next` of the previous page)' }))
}, { additionalProperties: false })

export const AuditPageSchema = Type.Object({
  entries: Type.Array(Type.Object({
    id: Type.Integer(),
    at: Type.Integer({ description: 'ms since the epoch' }),
    actor: Type.Union([Type.String(), Type.Null()], { description: 'the token\'s sub; null when no valid token was shown' }),
    action: Type.String({ description: 'method and route, e.g. DELETE /api/narrative/cache' }),
    ip: Type.String(),
    outcome: Type.Union([Type.Literal('allowed'), Type.Literal('denied')]),
    status: Type.Integer({ description: 'the HTTP status answered' }),
    detail: Type.Union([Type.String(), Type.Null()])
  }), { description: 'newest first' }),
  next: Type.Union([Type.Integer(), Type.Null()], { description: 'the `before` of the next (older) page; null when this is the last' })
})
