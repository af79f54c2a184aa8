import fp from 'fastify-plugin'
import { CircuitBreaker } from '../src/swr/breaker.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Guards every cache-store (Redis) call; never the narrator. */
    breaker: CircuitBreaker
    /** Guards every call to the database (the durable tier and build claims). */
    databaseBreaker: CircuitBreaker
  }
}

export interface BreakerPluginOptions {
  failureThreshold?: number
  cooldownMs?: number
}

/**
 * The two circuit breakers, each named in its own errors, logs and the
 * `narrative_breaker_state` metric: `redis` (options for tests) and `database`.
 */
export default fp<BreakerPluginOptions>(async (fastify, opts) => {
  const make = (name: string, failureThreshold: number, cooldownMs: number): CircuitBreaker => {
    const breaker = new CircuitBreaker({
      name,
      failureThreshold,
      cooldownMs,
      onStateChange: state => fastify.log.warn({ breaker: name, state }, `${name} circuit breaker ${state}`)
    })
    fastify.metrics.addBreaker(breaker)
    return breaker
  }
  fastify.decorate('breaker', make('redis', opts.failureThreshold ?? 5, opts.cooldownMs ?? 5000))
  fastify.decorate('databaseBreaker', make('database', 3, 5000))
}, { name: 'breaker', dependencies: ['config', 'metrics'] })
