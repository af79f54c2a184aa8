import fp from 'fastify-plugin'
import { CircuitBreaker } from '../src/swr/breaker.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Guards every cache-store call; never the narrator. */
    breaker: CircuitBreaker
  }
}

export interface BreakerPluginOptions {
  failureThreshold?: number
  cooldownMs?: number
}

export default fp<BreakerPluginOptions>(async (fastify, opts) => {
  const breaker = new CircuitBreaker({
    name: 'redis',
    failureThreshold: opts.failureThreshold ?? 5,
    cooldownMs: opts.cooldownMs ?? 5000,
    onStateChange: state => fastify.log.warn({ breaker: 'redis', state }, `redis circuit breaker ${state}`)
  })
  fastify.decorate('breaker', breaker)
}, { name: 'breaker', dependencies: ['config'] })
