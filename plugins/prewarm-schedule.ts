import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'
import { prewarmTop } from '../src/admin/prewarm-top.ts'
import type { NarrativeJob } from '../src/narrative/adapter.ts'
import type { Warmer } from '../src/narrative/prewarm.ts'
import { MemoryLeaseStore, RedisLeaseStore } from '../src/rollout/lease.ts'
import { ScheduledPrewarm, type PrewarmRunResult } from '../src/rollout/scheduled-prewarm.ts'
import { RedisStore } from '../src/swr/redis-store.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The scheduled pre-warm (PREWARM_SCHEDULE), when one is set. */
    prewarmSchedule: ScheduledPrewarm | undefined
  }
}

export interface PrewarmSchedulePluginOptions {
  /** Tests: a shorter lease, so a dead holder's is taken over sooner. */
  leaseTtlMs?: number
}

/** How many of the most requested keys a scheduled run looks at, per model call of its budget. */
const KEYS_PER_CALL = 2

/**
 * PREWARM_SCHEDULE: the pre-warm of the most requested profiles (what
 * POST /api/narrative/prewarm does) on a cron schedule, on one instance of
 * the fleet per firing (a lease in Redis, src/rollout/scheduled-prewarm.ts),
 * at most PREWARM_MAX_CALLS model calls a run. Progress in the metrics and in
 * GET /api/narrative/rollout.
 */
export default fp<PrewarmSchedulePluginOptions>(async (fastify, opts) => {
  const { config, store, metrics, db } = fastify
  const { prewarmSchedule, prewarmMaxCalls } = config.prompts
  const runs = new Counter({ name: 'narrative_prewarm_scheduled_runs_total', help: 'Scheduled pre-warm runs on this instance, by outcome (started, ended, failed) and whether it took over a dead holder\'s lease', labelNames: ['outcome', 'taken_over'] as const, registers: [metrics.registry] })
  const warmed = new Counter({ name: 'narrative_prewarm_scheduled_keys_total', help: 'Keys the scheduled pre-warm went through on this instance, by outcome (warmed, skipped, failed, refused, over_budget)', labelNames: ['outcome'] as const, registers: [metrics.registry] })
  const running = new Gauge({ name: 'narrative_prewarm_scheduled_running', help: '1 while this instance runs the scheduled pre-warm', registers: [metrics.registry] })
  const budgetLeft = new Gauge({ name: 'narrative_prewarm_scheduled_budget_left', help: 'Model calls left of PREWARM_MAX_CALLS in the current (or last) scheduled run on this instance', registers: [metrics.registry] })
  if (prewarmSchedule === undefined) {
    fastify.decorate('prewarmSchedule', undefined)
    return
  }

  const run = async (signal: AbortSignal): Promise<PrewarmRunResult> => {
    // Each key the engine may build reserves a call of the budget first; one it did not build gives it back.
    let reserved = 0
    let overBudget = 0
    const pending = new Set<Promise<void>>()
    budgetLeft.set(prewarmMaxCalls)
    const warmer: Warmer = {
      warm: async (job: NarrativeJob) => {
        if (signal.aborted) return 'failed'
        // A reservation under way may be given back (its key was fresh): wait for it before calling the budget spent.
        // eslint-disable-next-line no-unmodified-loop-condition -- reserved is given back by the reservations awaited
        while (reserved >= prewarmMaxCalls && pending.size > 0) await Promise.race(pending)
        if (reserved >= prewarmMaxCalls) {
          overBudget++
          warmed.inc({ outcome: 'over_budget' })
          return 'skipped'
        }
        reserved++
        const warming = fastify.narratives.warm(job)
        const settled = warming.then(() => {}, () => {})
        pending.add(settled)
        let outcome: Awaited<typeof warming>
        try {
          outcome = await warming
        } finally {
          pending.delete(settled)
        }
        if (outcome !== 'warmed') reserved--
        warmed.inc({ outcome })
        budgetLeft.set(prewarmMaxCalls - reserved)
        return outcome
      }
    }
    const jobOf = fastify.narratives.storedJob.bind(fastify.narratives)
    const onRefused = (key: string, reason: string): void => { warmed.inc({ outcome: 'refused' }); fastify.log.info({ key, reason }, 'scheduled pre-warm refused a stored profile') }
    const result = await prewarmTop({ warmer, analytics: db.analytics, jobOf, onRefused }, { top: Math.min(10_000, prewarmMaxCalls * KEYS_PER_CALL), period: '7d', concurrency: 4 })
    return { warmed: result.warmed, skipped: result.skipped - overBudget, failed: result.failed, refused: result.refused, budgetLeft: prewarmMaxCalls - reserved }
  }

  const scheduled = new ScheduledPrewarm({
    schedule: prewarmSchedule,
    leases: store instanceof RedisStore ? new RedisLeaseStore(store.redis) : new MemoryLeaseStore(),
    run,
    // Beside the namespace, as locks are.
    prefix: `prewarm:${config.cachePrefix}`,
    logger: fastify.log,
    leaseTtlMs: opts.leaseTtlMs,
    onRun: (event, r) => {
      runs.inc({ outcome: event, taken_over: String(r.takenOver) })
      running.set(event === 'started' ? 1 : 0)
    }
  })
  fastify.decorate('prewarmSchedule', scheduled)
  fastify.addHook('onReady', async () => { scheduled.start() })
  // Before the cache plugin's own onClose (hooks run in reverse): the run stops before the engine closes.
  fastify.addHook('onClose', async () => { await scheduled.close() })
}, { name: 'prewarm-schedule', dependencies: ['config', 'redis', 'db', 'cache', 'metrics'] })
