import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { HotCounter, HotHistogram } from './hot-metrics.ts'
import type { EngineCounters } from './swr/engine.ts'
import type { BreakerState } from './swr/breaker.ts'
import type { StoreFailureCounters } from './swr/guarded-store.ts'
import type { NarratorCounters } from './narrator/narrator.ts'

/**
 * Where the mirrored metrics read their figures at scrape time. Each plugin
 * that owns a figure provides it (metrics.provide, metrics.addBreaker); a
 * figure nobody provides is simply not exposed.
 */
export interface MetricSources {
  engine?: () => EngineCounters
  locksHeld?: () => number
  /** Store calls of the locks (the engine's own are in its counters). */
  lockStoreFailures?: () => StoreFailureCounters
  analytics?: () => { dropped: number, written: number }
  narrator?: () => NarratorCounters | undefined
  /** Durable reads given up, for any reason. */
  durableReadsGivenUp?: () => number
  /** Builds that waited on another instance's build claim. */
  claimWaits?: () => number
  /** Builds that went ahead without a claim: PostgreSQL could not say whether another instance was building. */
  buildsWithoutClaim?: () => number
}

/** A circuit breaker as the metrics see it: its name (the label) and its state. */
interface NamedBreaker { readonly name: string, readonly state: BreakerState }

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

/** A counter whose value is read from elsewhere at scrape time. */
function mirroredCounter (registry: Registry, name: string, help: string, read: () => number | undefined): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      const value = read()
      if (value === undefined) return
      this.reset()
      this.inc(value)
    }
  })
}

/**
 * Every metric the server exposes (names follow the original design's list),
 * in a registry of its own so several apps in one process never clash.
 */
export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const sources: MetricSources = {}
  const breakers: NamedBreaker[] = []
  const c = (pick: (x: EngineCounters) => number) => () => { const x = sources.engine?.(); return x === undefined ? undefined : pick(x) }
  const storeFailures = (pick: (x: StoreFailureCounters) => number) => () => {
    const engine = sources.engine?.()
    const locks = sources.lockStoreFailures?.()
    return engine === undefined && locks === undefined ? undefined : (engine === undefined ? 0 : pick(engine)) + (locks === undefined ? 0 : pick(locks))
  }

  const metrics = {
    registry,
    /** Registers where figures are read from (a plugin's own counters). */
    provide (more: MetricSources): void { Object.assign(sources, more) },
    /** Exposes a breaker's state under its name. */
    addBreaker (breaker: NamedBreaker): void { breakers.push(breaker) },
    // The three metrics every hit touches: src/hot-metrics.ts.
    requests: new HotCounter({ name: 'narrative_requests_total', help: 'Narrative requests by cache status (hit, stale, durable, miss, fallback, error)', labelNames: ['status'] as const, registers: [registry] }),
    latency: new HotHistogram({
      name: 'narrative_http_request_duration_seconds',
      help: 'Request latency by route and cache status',
      labelNames: ['route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry]
    }),
    modelCalls: new Counter({ name: 'narrative_model_calls_total', help: 'Narrator calls that produced a narrative, by engine and reason (request, refresh)', labelNames: ['engine', 'reason'] as const, registers: [registry] }),
    generationSeconds: new Histogram({ name: 'narrative_generation_duration_seconds', help: 'How long a generation took, retries included', labelNames: ['engine'] as const, buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60], registers: [registry] }),
    tokens: new Counter({ name: 'narrative_tokens_total', help: 'Model tokens, by model and kind (prompt, completion)', labelNames: ['model', 'kind'] as const, registers: [registry] }),
    cost: new Counter({ name: 'narrative_estimated_cost_usd_total', help: 'Estimated model cost in USD (tokens times MODEL_PRICES)', labelNames: ['model'] as const, registers: [registry] }),
    saving: new HotCounter({ name: 'narrative_estimated_saving_usd_total', help: 'Estimated USD saved: each answer without a model call, at the average cost of a call so far', registers: [registry] }),
    // Issue 17: a generation of a narrative the durable tier already held. Should stay at 0.
    repaidGenerations: new Counter({ name: 'narrative_repaid_generations_total', help: 'Generations of a narrative already paid for (the durable tier held it when the write landed): the model paid twice', registers: [registry] }),
    valueSize: new Histogram({ name: 'narrative_value_size_bytes', help: 'Encoded size of values written to the cache', buckets: [512, 1024, 2048, 4096, 8192, 16384, 65536, 131072], registers: [registry] })
  }

  mirroredCounter(registry, 'narrative_refresh_started_total', 'Background refreshes started', c(x => x.refreshStarted))
  mirroredCounter(registry, 'narrative_refresh_skipped_locked_total', 'Background refreshes skipped because another instance held the refresh lock', c(x => x.refreshSkippedLocked))
  mirroredCounter(registry, 'narrative_refresh_succeeded_total', 'Background refreshes that stored a new narrative', c(x => x.refreshSucceeded))
  mirroredCounter(registry, 'narrative_refresh_failed_total', 'Background refreshes that failed (the stale value stays)', c(x => x.refreshFailed))
  mirroredCounter(registry, 'narrative_redis_errors_total', 'Cache store commands that failed (timeouts included)', storeFailures(x => x.storeErrors))
  mirroredCounter(registry, 'narrative_redis_timeouts_total', 'Cache store commands that timed out', storeFailures(x => x.storeTimeouts))
  mirroredCounter(registry, 'narrative_corrupt_entries_total', 'Cache entries found corrupt, deleted and regenerated', c(x => x.corruptEntries))
  mirroredCounter(registry, 'narrative_model_replies_cut_total', 'Model replies cut off past the narrative\'s length limits (the template answered; nothing cached)', () => sources.narrator?.()?.repliesCut)
  mirroredCounter(registry, 'narrative_durable_reads_given_up_total', 'Durable (PostgreSQL) reads given up (a row read, or a build claim\'s look, which reads whether the row is there): the breaker was open, the database silent, past the budget, or failed', () => sources.durableReadsGivenUp?.())
  mirroredCounter(registry, 'narrative_build_claim_waits_total', 'Builds that waited for another instance\'s durable build claim instead of paying the model', () => sources.claimWaits?.())
  mirroredCounter(registry, 'narrative_builds_without_claim_total', 'Builds that went ahead without a durable build claim, PostgreSQL being unable to say whether another instance was building (with Redis lost too, a key may be paid twice)', () => sources.buildsWithoutClaim?.())
  mirroredCounter(registry, 'narrative_analytics_dropped_total', 'Analytics events dropped (buffer full or database down)', () => sources.analytics?.().dropped)
  mirroredCounter(registry, 'narrative_analytics_written_total', 'Analytics events written', () => sources.analytics?.().written)
  new Gauge({ name: 'narrative_locks_in_flight', help: 'Build and refresh locks this instance holds', registers: [registry], collect () { this.set(sources.locksHeld?.() ?? 0) } }) // eslint-disable-line no-new
  new Gauge({ // eslint-disable-line no-new
    name: 'narrative_breaker_state',
    help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open',
    // With several workers, the worst of them.
    aggregator: 'max',
    labelNames: ['breaker'] as const,
    registers: [registry],
    collect () {
      for (const breaker of breakers) this.set({ breaker: breaker.name }, BREAKER_VALUE[breaker.state])
    }
  })
  return metrics
}

export type Metrics = ReturnType<typeof createMetrics>
