import fp from 'fastify-plugin'
import { NarrativeEngine } from '../src/cache/narrative-engine.js'
import { NegativeCache } from '../src/cache/negative-cache.js'
import { NarrativeService } from '../src/narrative-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    engine: NarrativeEngine
    narratives: NarrativeService
  }
}

export interface CachePluginOptions {
  /** Overrides for tests: how long waiters wait, how often they poll. */
  maxWaitMs?: number
  pollMinMs?: number
  pollMaxMs?: number
  clock?: () => number
}

export default fp<CachePluginOptions>(async (fastify, opts) => {
  const { config, store, breaker, narrator } = fastify
  const deadlineMs = config.openai.timeoutMs
  const engine = new NarrativeEngine({
    store,
    breaker,
    narrator,
    logger: fastify.log,
    clock: opts.clock,
    options: {
      prefix: config.cachePrefix,
      ttlSeconds: config.ttlSeconds,
      staleSeconds: config.staleSeconds,
      generation: { attempts: config.openai.maxAttempts, baseDelayMs: 250, maxDelayMs: 2000, deadlineMs },
      refresh: { attempts: 3, baseDelayMs: 500, maxDelayMs: 5000, deadlineMs: deadlineMs * 2 },
      // A waiter gives the builder its whole deadline and a little more before falling back.
      maxWaitMs: opts.maxWaitMs ?? deadlineMs + 2000,
      pollMinMs: opts.pollMinMs ?? 50,
      pollMaxMs: opts.pollMaxMs ?? 1000
    }
  })
  await engine.start()
  const negative = new NegativeCache(store, breaker, { minTtlMs: 5 * 60_000, maxTtlMs: 15 * 60_000, maxEntries: 10_000, clock: opts.clock })
  fastify.decorate('engine', engine)
  fastify.decorate('narratives', new NarrativeService(engine, negative, config.cachePrefix, opts.clock))
  // Runs before the store closes (onClose hooks of later plugins run first).
  fastify.addHook('onClose', async () => { await engine.close() })
}, { name: 'cache', dependencies: ['config', 'redis', 'breaker', 'narrator'] })
