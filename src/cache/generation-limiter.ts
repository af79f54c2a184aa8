import type { CircuitBreaker } from './breaker.js'
import { MemoryStore } from './memory-store.js'
import type { CacheStore } from './store.js'

export interface GenerationLimiterOptions {
  /** Generations a client may cause per minute; 0 turns the limit off. */
  perMinute: number
  prefix: string
  clock?: () => number
}

export class GenerationLimitExceeded extends Error {
  override readonly name: string = 'GenerationLimitExceeded'
  constructor (readonly limit: number, readonly retryAfterSeconds: number) { super(`over ${limit} generations a minute`) }
}

const WINDOW_MS = 60_000

/**
 * Counts the model generations each client causes, in one-minute windows kept
 * in Redis so the limit holds across instances. When Redis is absent or
 * unusable (breaker open, command failed) it counts in memory instead: the
 * limit then holds per instance, and a Redis outage never blocks anyone.
 */
export class GenerationLimiter {
  private readonly local: MemoryStore

  constructor (private readonly store: CacheStore, private readonly breaker: CircuitBreaker, private readonly options: GenerationLimiterOptions) {
    if (!(Number.isInteger(options.perMinute) && options.perMinute >= 0)) throw new Error('generation limit must be a whole number, 0 or more')
    this.local = new MemoryStore({ maxBytes: 16 * 1024 * 1024, clock: options.clock })
  }

  get enabled (): boolean {
    return this.options.perMinute > 0
  }

  /**
   * Counts one generation for `client`; throws GenerationLimitExceeded past
   * the limit. `useStore: false` counts in memory at once (the caller knows the
   * store is failing and must not wait on it).
   */
  async take (client: string, useStore = true): Promise<void> {
    if (!this.enabled) return
    const key = `rl:${this.options.prefix}:gen:${client}`
    let window: { count: number, ttlMs: number }
    if (useStore && this.store.kind !== 'memory' && this.breaker.allows()) {
      try {
        window = await this.breaker.run(() => this.store.incrWindow(key, WINDOW_MS))
      } catch {
        window = await this.local.incrWindow(key, WINDOW_MS)
      }
    } else {
      window = await this.local.incrWindow(key, WINDOW_MS)
    }
    if (window.count > this.options.perMinute) {
      throw new GenerationLimitExceeded(this.options.perMinute, Math.max(1, Math.ceil(window.ttlMs / 1000)))
    }
  }

  async close (): Promise<void> {
    await this.local.close()
  }
}
