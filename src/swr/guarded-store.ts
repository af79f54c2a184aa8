import type { CircuitBreaker } from './breaker.ts'
import type { CacheStore } from './store.ts'

export interface StoreFailureCounters {
  storeErrors: number
  storeTimeouts: number
}

/** The store behind its breaker: every call the engine makes goes through here, and its failures are counted. */
export class GuardedStore {
  readonly store: CacheStore
  readonly breaker: CircuitBreaker
  private readonly counters: StoreFailureCounters

  constructor (store: CacheStore, breaker: CircuitBreaker, counters: StoreFailureCounters) {
    this.store = store
    this.breaker = breaker
    this.counters = counters
  }

  async run<T> (op: (store: CacheStore) => Promise<T>): Promise<T> {
    try {
      return await this.breaker.run(() => op(this.store))
    } catch (err) {
      this.counters.storeErrors++
      if (/timed out/i.test((err as Error).message)) this.counters.storeTimeouts++
      throw err
    }
  }
}
