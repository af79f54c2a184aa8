import fp from 'fastify-plugin'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { FleetReporter, type FleetRedis } from '../src/fleet/reporter.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's reports to Redis, and the view of every live instance. */
    fleet: FleetReporter
  }
}

export interface FleetPluginOptions {
  /** How often this instance reports (default 5000 ms). */
  intervalMs?: number
  /** How long a report lives (default 15000 ms): an instance silent this long leaves the view. */
  ttlMs?: number
}

/**
 * Every instance writes its figures (the engine's counters, the analytics
 * buffer's, the breaker's state) to Redis every 5 s with a 15 s expiry, so
 * GET /api/narrative/stats and /admin show the whole fleet from any instance.
 * Without Redis the fleet is this instance alone.
 */
export default fp<FleetPluginOptions>(async (fastify, opts) => {
  const { config, engine, breaker, db } = fastify
  const redis = fastify.hasDecorator('redis') && fastify.store.kind !== 'memory' ? fastify.redis as unknown as FleetRedis : undefined
  let lastErrorLog = 0
  const reporter = new FleetReporter({
    redis,
    prefix: config.cachePrefix,
    id: `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`,
    host: hostname(),
    pid: process.pid,
    intervalMs: opts.intervalMs,
    ttlMs: opts.ttlMs,
    snapshot: () => {
      const c = engine.counters
      const a = db.buffer.counters
      return {
        hits: c.hits,
        staleHits: c.staleHits,
        durableHits: c.durableHits,
        misses: c.misses,
        fallbacks: c.fallbacks,
        generations: c.builds,
        refreshStarted: c.refreshStarted,
        refreshSkippedLocked: c.refreshSkippedLocked,
        refreshSucceeded: c.refreshSucceeded,
        refreshFailed: c.refreshFailed,
        analyticsRecorded: a.recorded,
        analyticsWritten: a.written,
        analyticsDropped: a.dropped,
        breaker: breaker.state
      }
    },
    onError: err => {
      if (Date.now() - lastErrorLog < 60_000) return
      lastErrorLog = Date.now()
      fastify.log.warn({ err: { message: err.message } }, 'fleet report to Redis failed (the fleet view shows what it can)')
    }
  })
  fastify.decorate('fleet', reporter)
  fastify.addHook('onReady', async () => { reporter.start() })
  fastify.addHook('onClose', async () => { await reporter.stop() })
}, { name: 'fleet', dependencies: ['config', 'redis', 'breaker', 'db', 'cache'] })
