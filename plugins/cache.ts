import fp from 'fastify-plugin'
import { CircuitBreaker } from '../src/cache/breaker.js'
import { DurableTier } from '../src/cache/durable-tier.js'
import { GenerationLimiter } from '../src/cache/generation-limiter.js'
import { NarrativeEngine, type EngineEvents } from '../src/cache/narrative-engine.js'
import { NegativeCache } from '../src/cache/negative-cache.js'
import { NarrativeService, systemsOf, type EventRecorder } from '../src/narrative-service.js'

declare module 'fastify' {
  interface FastifyInstance {
    engine: NarrativeEngine
    narratives: NarrativeService
    limiter: GenerationLimiter
    durable: DurableTier
  }
}

export interface CachePluginOptions {
  /** Overrides for tests: how long waiters wait, how often they poll. */
  maxWaitMs?: number
  pollMinMs?: number
  pollMaxMs?: number
  clock?: () => number
}

/**
 * Wires the engine: the store and its breaker, the narrator, the durable tier
 * and analytics when the db plugin is there, and the generation rate limit.
 */
export default fp<CachePluginOptions>(async (fastify, opts) => {
  const { config, store, breaker, narrator } = fastify
  const deadlineMs = config.openai.timeoutMs
  const db = fastify.db
  const recorder: EventRecorder = db.buffer

  const durable = new DurableTier(db.narratives, new CircuitBreaker({
    failureThreshold: 3,
    cooldownMs: 5000,
    onStateChange: state => fastify.log.warn({ breaker: state }, `database circuit breaker ${state}`)
  }), fastify.log, { readTimeoutMs: 300 })

  const events: EngineEvents = {
    generation: (job, generation, durationMs) => recorder.record({
      at: Date.now(),
      event: 'generation',
      key: job.key,
      systems: systemsOf(job.profile),
      durationMs,
      promptTokens: generation.usage?.promptTokens ?? null,
      completionTokens: generation.usage?.completionTokens ?? null,
      model: generation.engine
    })
  }

  const engine = new NarrativeEngine({
    store,
    breaker,
    narrator,
    durable,
    events,
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
  const limiter = new GenerationLimiter(store, breaker, { perMinute: config.generationRateLimit, prefix: config.cachePrefix })
  fastify.decorate('engine', engine)
  fastify.decorate('limiter', limiter)
  fastify.decorate('durable', durable)
  fastify.decorate('narratives', new NarrativeService({ engine, negative, limiter, recorder, prefix: config.cachePrefix, clock: opts.clock }))
  fastify.addHook('onClose', async () => {
    await engine.close()
    await limiter.close()
  })
}, { name: 'cache', dependencies: ['config', 'redis', 'breaker', 'narrator', 'db'] })
