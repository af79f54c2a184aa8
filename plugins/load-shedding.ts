import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import { OverloadedError } from '../src/errors.ts'

/** Retry-After of a shed request, in seconds. */
export const SHED_RETRY_AFTER_SECONDS = 10
/** Routes never shed: liveness, readiness (it says `overloaded` itself) and metrics must answer most when the process is busiest. */
const NEVER_SHED = new Set(['/health', '/ready', '/metrics'])

export interface LoadSheddingOptions {
  /** How often the process is measured (default 1000 ms; tests use less). */
  sampleIntervalMs?: number
}

/**
 * Load shedding with @fastify/under-pressure: past a threshold of the
 * environment (SHED_EVENT_LOOP_DELAY_MS, default 1000 ms of mean event-loop
 * delay over the last second, in production only; SHED_HEAP_USED_MB and SHED_RSS_MB, off by
 * default) every request but /health, /ready and /metrics is refused at once
 * (an onRequest hook, before any work) with a 503 NARR_OVERLOADED and
 * `Retry-After: 10`, and /ready says 503 `overloaded` so a balancer sends
 * traffic elsewhere. Decorates `isUnderPressure()` and `memoryUsage()`.
 *
 * under-pressure measures the process and decides; the hook that refuses is
 * ours. Its own onRequest hook reads `request.routeOptions.config` on every
 * request, and that getter builds a new object each time: on the hit path
 * that was a measured share of the CPU per hit (bench/RESULTS.md, issue 16).
 * So the library is registered in a scope of its own with no routes, where
 * its hook never runs, and this hook asks its `isUnderPressure()`, which
 * only compares numbers it sampled.
 */
export default fp<LoadSheddingOptions>(async (fastify, opts) => {
  const { shed } = fastify.config
  let measured!: Pick<FastifyInstance, 'isUnderPressure' | 'memoryUsage'>
  await fastify.register(async function pressureGauge (scope) {
    await scope.register(underPressure, {
      maxEventLoopDelay: shed.eventLoopDelayMs,
      maxHeapUsedBytes: shed.heapUsedBytes,
      maxRssBytes: shed.rssBytes,
      sampleInterval: opts.sampleIntervalMs ?? 1000
    })
    measured = scope
  })
  const isUnderPressure = (): boolean => measured.isUnderPressure()
  fastify.decorate('isUnderPressure', isUnderPressure)
  fastify.decorate('memoryUsage', () => measured.memoryUsage())
  // Nothing to check (development's default): no hook at all.
  if (shed.eventLoopDelayMs === 0 && shed.heapUsedBytes === 0 && shed.rssBytes === 0) return

  /** Which threshold was passed, for the log line: only worked out when a request is shed. */
  const pressureType = (): string => {
    const now = measured.memoryUsage()
    if (shed.eventLoopDelayMs > 0 && now.eventLoopDelay > shed.eventLoopDelayMs) return 'eventLoopDelay'
    if (shed.heapUsedBytes > 0 && now.heapUsed > shed.heapUsedBytes) return 'heapUsedBytes'
    return 'rssBytes'
  }
  // Callback style: this runs on every request, and an async hook costs each one a promise.
  const refuseUnderPressure: onRequestHookHandler = function refuseUnderPressure (request, _reply, done) {
    if (!isUnderPressure() || NEVER_SHED.has(request.url.split('?')[0])) {
      done()
      return
    }
    request.log.warn({ pressure: pressureType() }, 'request shed: the process is overloaded')
    // The hook's error: the app's error handler answers 503 with Retry-After.
    done(Object.assign(new OverloadedError(SHED_RETRY_AFTER_SECONDS), { retryAfterSeconds: SHED_RETRY_AFTER_SECONDS }))
  }
  fastify.addHook('onRequest', refuseUnderPressure)
}, { name: 'load-shedding', fastify: '5.x', dependencies: ['config'] })
