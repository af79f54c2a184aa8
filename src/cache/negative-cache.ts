import { negativeKey } from '../domain/cache-key.js'
import type { CircuitBreaker } from './breaker.js'
import type { CacheStore } from './store.js'
import { LruMap } from '../lru-map.js'

export interface NegativeCacheOptions {
  /** TTLs are drawn between these, so a burst of bad inputs does not expire at once. */
  minTtlMs: number
  maxTtlMs: number
  /** Entries kept in this process at most. */
  maxEntries: number
  clock?: () => number
  random?: () => number
}

/**
 * Remembers profiles that passed the schema but broke a domain rule, with the
 * reason, for 5 to 15 minutes: repeats are answered 400 from memory. The
 * reason is also written under a `neg:` key in the store, best effort, so
 * other instances and operators can see what is being refused.
 */
export class NegativeCache {
  /** Recalling does not make an entry recent: only remembering it again does. */
  private readonly local: LruMap<string, { reason: string, expiresAt: number }>
  private readonly clock: () => number
  private readonly random: () => number

  constructor (private readonly store: CacheStore, private readonly breaker: CircuitBreaker, private readonly options: NegativeCacheOptions) {
    if (!(options.minTtlMs > 0 && options.maxTtlMs >= options.minTtlMs)) throw new Error('negative cache TTLs must be positive and ordered')
    this.local = new LruMap(options.maxEntries)
    this.clock = options.clock ?? Date.now
    this.random = options.random ?? Math.random
  }

  recall (key: string): string | undefined {
    const hit = this.local.peek(key)
    if (hit === undefined) return undefined
    if (hit.expiresAt <= this.clock()) {
      this.local.delete(key)
      return undefined
    }
    return hit.reason
  }

  remember (key: string, reason: string): void {
    const ttl = Math.round(this.options.minTtlMs + this.random() * (this.options.maxTtlMs - this.options.minTtlMs))
    this.local.set(key, { reason, expiresAt: this.clock() + ttl })
    this.breaker.run(() => this.store.set(negativeKey(key), reason, ttl)).catch(() => {})
  }

  get size (): number {
    return this.local.size
  }
}
