import fp from 'fastify-plugin'
import { DurableTier } from '../src/swr/durable-tier.ts'
import { BuildClaims } from '../src/swr/build-claims.ts'
import { SwrEngine } from '../src/swr/engine.ts'
import { LocalTier } from '../src/swr/local-tier.ts'
import { BuildClaimsRepository } from '../src/db/build-claims-repository.ts'
import { ENGINE_VERSION, promptVersion, type PromptVersion } from '../src/domain/prompt.ts'
import { RedisStore } from '../src/swr/redis-store.ts'
import type { CacheStore } from '../src/swr/store.ts'
import { parseWriterName, PromptSelection, writerName } from '../src/narrative/versions.ts'
import { SharedNames } from '../src/rollout/shared-names.ts'
import { Rollout, type HotJob, type RolloutStore } from '../src/narrative/rollout.ts'
import { MemoryTokenBucket, RedisTokenBucket } from '../src/rollout/token-bucket.ts'
import { SystemCatalogue } from '../src/domain/systems.ts'
import { GenerationLimiter } from '../src/generation-limiter.ts'
import { NarrativeBuilds, type NarrativeJob } from '../src/narrative/adapter.ts'
import { narrativeCodec, type NarrativeValue } from '../src/narrative/codec.ts'
import { durableNarratives } from '../src/narrative/durable-narratives.ts'
import { NarrativeService, systemsOf, type EventRecorder } from '../src/narrative/service.ts'
import type { Generation } from '../src/narrator/narrator.ts'
import type { NormalizedProfile } from '../src/domain/profile.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The stale-while-revalidate engine, caching narratives. */
    engine: SwrEngine<NarrativeValue>
    narratives: NarrativeService
    limiter: GenerationLimiter
    durable: DurableTier<NarrativeValue>
    /** Durable build claims: the record that a build is under way, outliving Redis. */
    buildClaims: BuildClaims
    /** The in-process first tier, when there is one. */
    localTier: LocalTier<NarrativeValue> | undefined
    /** Counts an answered request (or 'error') in the metrics. */
    countAnswer: (status: string) => void
    /** Which prompt version writes each key (PROMPT_VERSION, PROMPT_CANARY). */
    prompts: PromptSelection
    /** The rollout of a new prompt version: its status, pause and resume (its background writes only with ROLLOUT=gradual). */
    rollout: Rollout
  }
}

export interface CachePluginOptions {
  /** Overrides for tests: how long waiters wait, how often they poll. */
  maxWaitMs?: number
  pollMinMs?: number
  pollMaxMs?: number
  clock?: () => number
  /** Overrides for tests: the rollout's workers, how often it seeds its queue from analytics, how long a request looks for an earlier entry. */
  rollout?: { concurrency?: number, seedIntervalMs?: number, hotKeys?: number, peekBudgetMs?: number }
}

/** The rollout's claims, pause flag and the writers that have written, in the cache store: shared by the fleet on Redis. */
function rolloutStore (store: CacheStore, prefix: string, ttlMs: number): RolloutStore {
  // Beside the namespace, as locks are: a pattern delete of narratives never touches them.
  const pausedKey = `rollout:${prefix}:paused`
  const writers = new SharedNames(store, `rollout:${prefix}:writers`)
  return {
    markWriting: async writer => { await writers.add(writerName(writer), ttlMs) },
    writers: async () => (await writers.list()).map(n => parseWriterName(n.name)).filter(w => w !== undefined),
    claim: async (key, token, ttlMs) => await store.acquireLock(`rollout:${key}`, token, ttlMs).catch(() => false),
    unclaim: async (key, token) => { await store.releaseLock(`rollout:${key}`, token) },
    paused: async () => (await store.get(pausedKey)) !== null,
    setPaused: async paused => {
      if (paused) await store.set(pausedKey, '1', 365 * 86_400_000)
      else await store.del(pausedKey)
    }
  }
}

function known (version: string): PromptVersion {
  const prompt = promptVersion(version)
  if (prompt === undefined) throw new Error(`unknown prompt version ${version}`)
  return prompt
}

/**
 * Wires the engine to this server's parts (the store and locks, the durable
 * tier and build claims over the db plugin's database, the in-process tier)
 * and the narrative adapter to the engine (codec, builds, the generation
 * rate limit as the permit, metrics and analytics of each generation).
 */
export default fp<CachePluginOptions>(async (fastify, opts) => {
  const { config, store, breaker, databaseBreaker, narrator, locks, metrics } = fastify
  const deadlineMs = config.openai.timeoutMs
  const db = fastify.db
  const recorder: EventRecorder = db.buffer

  // A durable read is waited for up to the model's own deadline, not a short
  // one of its own: the rule and its reason are in src/swr/durable-tier.ts.
  const durable = new DurableTier(durableNarratives(db.narratives, ENGINE_VERSION, config.ttlSeconds), databaseBreaker, fastify.log, { readTimeoutMs: deadlineMs, available: db.isOpen })
  // Claims go through the durable tier's rules: one database, one verdict on whether it is up.
  const buildClaims = new BuildClaims(new BuildClaimsRepository(db.database), durable, fastify.log, {
    // Like the build lock: the longest build it covers, and a margin for the durable write.
    ttlMs: deadlineMs + 5000,
    pollMinMs: opts.pollMinMs ?? 50,
    pollMaxMs: opts.pollMaxMs ?? 1000,
    entryVersion: ENGINE_VERSION,
    clock: opts.clock
  })

  let spentUsd = 0
  let paidCalls = 0
  function onGeneration (job: NarrativeJob, generation: Generation, durationMs: number, reason: string): void {
    // This version and model have written here: requests of the writers after them will look for their entries.
    if (generation.engine !== 'template') rollout.noteWritten({ version: job.prompt?.version ?? prompts.active.version, model: generation.engine })
    metrics.modelCalls.inc({ engine: generation.engine, reason })
    metrics.generationSeconds.observe({ engine: generation.engine }, durationMs / 1000)
    const usage = generation.usage
    if (usage !== undefined) {
      metrics.tokens.inc({ model: generation.engine, kind: 'prompt' }, usage.promptTokens)
      metrics.tokens.inc({ model: generation.engine, kind: 'completion' }, usage.completionTokens)
      const price = config.modelPrices[generation.engine] ?? config.modelPrices['gpt-4o']
      const usd = (usage.promptTokens * price.input + usage.completionTokens * price.output) / 1_000_000
      metrics.cost.inc({ model: generation.engine }, usd)
      spentUsd += usd
      paidCalls++
    }
    recorder.record({
      at: Date.now(),
      event: 'generation',
      key: job.key,
      systems: systemsOf(job.profile),
      durationMs,
      promptTokens: usage?.promptTokens ?? null,
      completionTokens: usage?.completionTokens ?? null,
      model: generation.engine
    })
  }
  fastify.decorate('countAnswer', (status: string) => {
    metrics.requests.labels(status).inc()
    // An answer the model did not write this time saved one call at the average price so far.
    if (paidCalls > 0 && (status === 'hit' || status === 'stale' || status === 'durable')) metrics.saving.inc(spentUsd / paidCalls)
  })

  // The in-process first tier only makes sense in front of a remote store.
  const local = store.kind === 'memory' || config.localCache.maxEntries === 0
    ? undefined
    : new LocalTier<NarrativeValue>({ maxEntries: config.localCache.maxEntries, ttlMs: config.localCache.ttlMs, clock: opts.clock })
  const refreshDeadlineMs = deadlineMs * 2
  const engine = new SwrEngine<NarrativeValue>({
    store,
    breaker,
    locks,
    codec: narrativeCodec(ENGINE_VERSION, config.ttlSeconds),
    local,
    durable,
    claims: buildClaims,
    logger: fastify.log,
    clock: opts.clock,
    events: {
      stored: bytes => metrics.valueSize.observe(bytes),
      repaid: (key, value) => {
        metrics.repaidGenerations.inc()
        recorder.record({ at: Date.now(), event: 'repaid', key, systems: systemsOf(value.profile as NormalizedProfile) })
      }
    },
    options: {
      prefix: config.cachePrefix,
      ttlSeconds: config.ttlSeconds,
      staleSeconds: config.staleSeconds,
      buildDeadlineMs: deadlineMs,
      refreshDeadlineMs,
      // A waiter gives the builder its whole deadline and a little more before falling back.
      maxWaitMs: opts.maxWaitMs ?? deadlineMs + 2000,
      pollMinMs: opts.pollMinMs ?? 50,
      pollMaxMs: opts.pollMaxMs ?? 1000
    }
  })
  const builds = new NarrativeBuilds({
    narrator,
    generation: { attempts: config.openai.maxAttempts, baseDelayMs: 250, maxDelayMs: 2000, deadlineMs },
    refresh: { attempts: 3, baseDelayMs: 500, maxDelayMs: 5000, deadlineMs: refreshDeadlineMs },
    onGeneration,
    onError: err => fastify.log.warn({ err: (err as Error).message }, 'generation event handler failed')
  })
  await engine.start()
  metrics.provide({
    engine: () => engine.counters,
    durableReadsGivenUp: () => { const r = durable.readsGivenUp; return r.breakerOpen + r.timeout + r.stalled + r.error },
    claimWaits: () => buildClaims.counters.waited,
    buildsWithoutClaim: () => buildClaims.counters.unavailable
  })
  // Refusals are remembered in this process only (the service's body memo): nothing a client sends is written to the shared store unless it is valid.
  const canonical = {
    systems: config.systems === undefined ? undefined : new SystemCatalogue(config.systems),
    locales: config.locales === undefined ? undefined : new Set(config.locales)
  }
  const limiter = new GenerationLimiter(store, breaker, { perMinute: config.generationRateLimit, globalPerMinute: config.generationGlobalLimit, prefix: config.cachePrefix })
  fastify.decorate('engine', engine)
  fastify.decorate('limiter', limiter)
  fastify.decorate('durable', durable)
  fastify.decorate('buildClaims', buildClaims)
  fastify.decorate('localTier', local)
  const { prompts: promptConfig } = config
  const prompts = new PromptSelection({
    prefix: config.cachePrefix,
    model: narrator.engine,
    active: known(promptConfig.version),
    canary: promptConfig.canary === undefined ? undefined : { prompt: known(promptConfig.canary.version), percent: promptConfig.canary.percent }
  })
  const bucket = store instanceof RedisStore
    ? new RedisTokenBucket(store.redis, `rollout:${config.cachePrefix}:bucket`, promptConfig.rolloutRate)
    : new MemoryTokenBucket(promptConfig.rolloutRate)
  const hotJobs = async (limit: number): Promise<HotJob[]> => {
    const rows = await db.analytics.topKeys(Date.now() - 7 * 86_400_000, limit)
    const jobs = new Map<string, HotJob>()
    for (const row of rows) {
      const job = service.storedJob(row.profile, row.locale)
      if ('refused' in job) continue
      // Rows of several versions' keys name the same request: counted together.
      const seen = jobs.get(job.key)
      if (seen !== undefined) seen.count += row.count
      else jobs.set(job.key, { job, count: row.count })
    }
    return [...jobs.values()].sort((a, b) => b.count - a.count)
  }
  const gradual = promptConfig.rollout === 'gradual'
  const rollout = new Rollout({ engine, builds, selection: prompts, bucket, store: rolloutStore(store, config.cachePrefix, config.ttlSeconds * 1000), hotJobs, logger: fastify.log, options: { ...opts.rollout, mode: promptConfig.rollout } })
  const service = new NarrativeService({ engine, builds, canonical, limiter, recorder, prefix: config.cachePrefix, clock: opts.clock, prompts, rollout: gradual ? rollout : undefined })
  fastify.decorate('narratives', service)
  fastify.decorate('prompts', prompts)
  fastify.decorate('rollout', rollout)
  // Which earlier versions and models have entries here is known before the first request: none, and requests read nothing more.
  await rollout.refreshWriters().catch(err => { fastify.log.warn({ err: (err as Error).message }, 'rollout: could not read which versions and models have written') })
  if (gradual) fastify.addHook('onReady', async () => { rollout.start() })
  fastify.addHook('onClose', async () => {
    await rollout.close()
    await engine.close()
    await limiter.close()
  })
}, { name: 'cache', dependencies: ['config', 'redis', 'breaker', 'locks', 'narrator', 'db', 'metrics'] })
