export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerOptions {
  /**
   * What the breaker guards ("redis", "database"): named in its errors, its
   * state-change logs and its metric label, so one breaker's trouble is never
   * reported as another's. Default "unnamed" (tests that do not care).
   */
  name?: string
  /** Consecutive failures (errors or timeouts) that open the breaker. */
  failureThreshold: number
  /** How long it stays open before one trial call is let through. */
  cooldownMs: number
  clock?: () => number
  onStateChange?: (state: BreakerState) => void
}

export class BreakerOpenError extends Error {
  override readonly name: string = 'BreakerOpenError'
  readonly code = 'NARR_BREAKER_OPEN'
  /** The name of the breaker that refused. */
  readonly breaker: string
  constructor (breaker: string) {
    super(`the ${breaker} circuit breaker is open`)
    this.breaker = breaker
  }
}

/**
 * A circuit breaker around one dependency: the cache store (plugins/breaker.ts)
 * or the durable tier's database (plugins/cache.ts); the narrator is never
 * behind one, so an outage cannot stop generation. While open, calls fail at once
 * without touching the store; after the cool-down exactly one trial goes
 * through, and its outcome closes or re-opens the breaker.
 */
export class CircuitBreaker {
  private failures = 0
  private openedAt = 0
  private trialInFlight = false
  private current: BreakerState = 'closed'
  private readonly clock: () => number
  readonly name: string

  private readonly options: BreakerOptions

  constructor (options: BreakerOptions) {
    this.options = options
    if (!(options.failureThreshold >= 1)) throw new Error('breaker failureThreshold must be at least 1')
    if (!(options.cooldownMs >= 0)) throw new Error('breaker cooldownMs must not be negative')
    this.clock = options.clock ?? Date.now
    this.name = options.name ?? 'unnamed'
  }

  get state (): BreakerState {
    return this.current
  }

  /** True when a call would be let through now (closed, or a trial is due). */
  allows (): boolean {
    if (this.current === 'closed') return true
    if (this.current === 'open') return this.clock() - this.openedAt >= this.options.cooldownMs
    return !this.trialInFlight
  }

  async run<T> (fn: () => Promise<T>): Promise<T> {
    let trial = false
    if (this.current === 'open') {
      if (this.clock() - this.openedAt < this.options.cooldownMs) throw new BreakerOpenError(this.name)
      this.transition('half-open')
    }
    if (this.current === 'half-open') {
      if (this.trialInFlight) throw new BreakerOpenError(this.name)
      this.trialInFlight = true
      trial = true
    }
    try {
      const result = await fn()
      this.onSuccess()
      return result
    } catch (err) {
      this.onFailure()
      throw err
    } finally {
      if (trial) this.trialInFlight = false
    }
  }

  private onSuccess (): void {
    this.failures = 0
    if (this.current !== 'closed') this.transition('closed')
  }

  private onFailure (): void {
    this.failures++
    if (this.current === 'half-open' || this.failures >= this.options.failureThreshold) {
      this.openedAt = this.clock()
      if (this.current !== 'open') this.transition('open')
    }
  }

  private transition (state: BreakerState): void {
    this.current = state
    this.options.onStateChange?.(state)
  }
}
