import type { CircuitBreaker } from './swr/breaker.ts'
import { MemoryStore } from './swr/memory-store.ts'
import type { CacheStore } from './swr/store.ts'

export interface GenerationLimiterOptions {
  /** Model calls a client may cause per minute; 0 turns the limit off. */
  perMinute: number
  /** Model calls all clients together may cause per minute, across instances; 0 or absent turns it off. */
  globalPerMinute?: number
  prefix: string
  clock?: () => number
}

/** Which budget said no: the client's own, or the one all clients share. */
export type LimitScope = 'client' | 'global'

export class GenerationLimitExceeded extends Error {
  override readonly name: string = 'GenerationLimitExceeded'
  readonly limit: number
  readonly retryAfterSeconds: number
  readonly scope: LimitScope

  constructor (limit: number, retryAfterSeconds: number, scope: LimitScope = 'client') {
    super(`over ${limit} generations a minute${scope === 'global' ? ' from all clients' : ''}`)
    this.limit = limit
    this.retryAfterSeconds = retryAfterSeconds
    this.scope = scope
  }
}

const WINDOW_MS = 60_000

const checkLimit = (value: number, what: string): void => {
  if (!(Number.isInteger(value) && value >= 0)) throw new Error(`${what} must be a whole number, 0 or more`)
}

/**
 * Counts the model calls clients cause (every attempt, retries included), in
 * one-minute windows kept in Redis so the limits hold across instances: each
 * client's, and optionally one for all clients together (a ceiling on what
 * many addresses can cost between them). When Redis is absent or unusable
 * (breaker open, command failed) it counts in memory instead: the limits then
 * hold per instance, and a Redis outage never blocks anyone.
 */
export class GenerationLimiter {
  private readonly local: MemoryStore
  private readonly globalPerMinute: number

  private readonly store: CacheStore
  private readonly breaker: CircuitBreaker
  private readonly options: GenerationLimiterOptions

  constructor (store: CacheStore, breaker: CircuitBreaker, options: GenerationLimiterOptions) {
    this.store = store
    this.breaker = breaker
    this.options = options
    checkLimit(options.perMinute, 'generation limit')
    this.globalPerMinute = options.globalPerMinute ?? 0
    checkLimit(this.globalPerMinute, 'global generation limit')
    this.local = new MemoryStore({ maxBytes: 16 * 1024 * 1024, clock: options.clock })
  }

  get enabled (): boolean {
    return this.options.perMinute > 0 || this.globalPerMinute > 0
  }

  /**
   * Counts one model call for `client`; throws GenerationLimitExceeded past
   * its limit, then past the global one. A call its own limit refuses is not
   * counted globally: one client over its limit cannot spend the others'
   * budget. `useStore: false` counts in memory at once (the caller knows the
   * store is failing and must not wait on it). `perMinute`: this client's own
   * limit, when it has one (an API key's), instead of the configured one.
   */
  async take (client: string, useStore = true, perMinute = this.options.perMinute): Promise<void> {
    if (perMinute > 0) {
      const window = await this.count(`rl:${this.options.prefix}:gen:${client}`, useStore)
      if (window.count > perMinute) throw new GenerationLimitExceeded(perMinute, retryAfter(window.ttlMs))
    }
    if (this.globalPerMinute > 0) {
      const window = await this.count(`rl:${this.options.prefix}:gen-all`, useStore)
      if (window.count > this.globalPerMinute) throw new GenerationLimitExceeded(this.globalPerMinute, retryAfter(window.ttlMs), 'global')
    }
  }

  private async count (key: string, useStore: boolean): Promise<{ count: number, ttlMs: number }> {
    if (useStore && this.store.kind !== 'memory' && this.breaker.allows()) {
      try {
        return await this.breaker.run(() => this.store.incrWindow(key, WINDOW_MS))
      } catch {}
    }
    return await this.local.incrWindow(key, WINDOW_MS)
  }

  async close (): Promise<void> {
    await this.local.close()
  }
}

function retryAfter (ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000))
}
