import fp from 'fastify-plugin'
import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import RedisStore from '@fastify/rate-limit/store/RedisStore.js'
import type { Cluster, Redis } from 'ioredis'
import { RateLimitStoreDownError } from '../src/errors.ts'
import { rateLimitKey } from '../src/client-key.ts'

/** Admin routes: 10 requests a second on average, bursts of 20 (a 20-request window of 2 s). */
export const ADMIN_RATE_LIMIT = { max: 20, timeWindow: 2000 }

type Callback = (err: Error | null, result: { current: number, ttl: number } | null) => void

/**
 * @fastify/rate-limit's own Redis store, made to fail closed: when Redis
 * cannot count, an admin request is refused with 503 rather than let through
 * unlimited (@fastify/rate-limit would answer 500, or skip the limit with
 * skipOnError). Only admin routes use this limiter; the public route's
 * generation limit is src/generation-limiter.ts, which fails open.
 */
interface StoreParams { continueExceeding?: boolean, exponentialBackoff?: boolean }

function failClosedStore (redis: Redis | Cluster, prefix: string): FastifyRateLimitStoreCtor {
  class FailClosedRedisStore {
    private readonly inner: RedisStore
    constructor (params: StoreParams, inner?: RedisStore) {
      this.inner = inner ?? new RedisStore(params.continueExceeding === true, params.exponentialBackoff === true, redis, `rl:${prefix}:admin:`)
    }

    incr (key: string, cb: Callback, timeWindow: number, max: number): void {
      this.inner.incr(key, (err, result) => {
        if (err !== null) cb(new RateLimitStoreDownError(), null)
        else cb(null, result)
      }, timeWindow, max)
    }

    child (routeOptions: StoreParams): FailClosedRedisStore {
      return new FailClosedRedisStore(routeOptions, this.inner.child(routeOptions))
    }
  }
  return FailClosedRedisStore as unknown as FastifyRateLimitStoreCtor
}

export default fp(async (fastify) => {
  const redis = fastify.store.kind === 'memory' ? undefined : fastify.redis as unknown as Redis | Cluster
  await fastify.register(rateLimit, {
    global: false,
    skipOnError: false,
    // By address, an IPv6 client by its /64: the plugin's own normalizeIP, after
    // dropping a zone id (src/client-key.ts), as the generation limit counts.
    keyGenerator: request => rateLimitKey(request.ip),
    ...(redis === undefined ? {} : { store: failClosedStore(redis, fastify.config.cachePrefix) }),
    errorResponseBuilder: (_request, context) => Object.assign(
      new Error(`Admin routes allow ${context.max} requests per ${context.after}; try again in ${Math.ceil(context.ttl / 1000)} s`),
      { statusCode: 429, code: 'NARR_ADMIN_RATE_LIMITED', retryAfterSeconds: Math.max(1, Math.ceil(context.ttl / 1000)) }
    )
  })
}, { name: 'rate-limit', dependencies: ['config', 'redis'] })
