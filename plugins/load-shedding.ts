import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
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
 * (its onRequest hook, before any work) with a 503 NARR_OVERLOADED and
 * `Retry-After: 10`, and /ready says 503 `overloaded` so a balancer sends
 * traffic elsewhere. Decorates `isUnderPressure()` and `memoryUsage()`.
 */
export default fp<LoadSheddingOptions>(async (fastify, opts) => {
  const { shed } = fastify.config
  await fastify.register(underPressure, {
    maxEventLoopDelay: shed.eventLoopDelayMs,
    maxHeapUsedBytes: shed.heapUsedBytes,
    maxRssBytes: shed.rssBytes,
    sampleInterval: opts.sampleIntervalMs ?? 1000,
    retryAfter: SHED_RETRY_AFTER_SECONDS,
    // Only called under pressure. A rejection is the hook's error: the app's
    // error handler answers 503 with Retry-After; resolving lets the request on.
    pressureHandler: async (request, _reply, type) => {
      if (NEVER_SHED.has(request.url.split('?')[0])) return
      request.log.warn({ pressure: type }, 'request shed: the process is overloaded')
      throw Object.assign(new OverloadedError(SHED_RETRY_AFTER_SECONDS), { retryAfterSeconds: SHED_RETRY_AFTER_SECONDS })
    }
  })
}, { name: 'load-shedding', fastify: '5.x', dependencies: ['config'] })
