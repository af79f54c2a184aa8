declare module '@fastify/rate-limit/store/RedisStore.js' {
  import type { Cluster, Redis } from 'ioredis'
  type Callback = (err: Error | null, result: { current: number, ttl: number } | null) => void
  class RedisStore {
    constructor (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis | Cluster, key?: string)
    incr (key: string, cb: Callback, timeWindow: number, max: number): void
    child (routeOptions: unknown): RedisStore
  }
  export default RedisStore
}
