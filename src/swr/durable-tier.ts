import type { Entry } from './types.ts'
import { BreakerOpenError, type CircuitBreaker } from './breaker.ts'
import type { Logger } from './logger.ts'

/** What the durable tier needs from its repository (the adapter's, over src/db). */
export interface DurableRepository<V> {
  /** The entry and the version it was written with; null when there is none the adapter can serve. */
  get (key: string): Promise<{ entry: Entry<V>, version: number } | null>
  /** Newer-wins write; `existed`: a servable row was there before (the value had been paid for already). */
  write (key: string, entry: Entry<V>, version: number): Promise<{ written: boolean, existed: boolean }>
}

export interface DurableTierOptions {
  /**
   * A call's budget: past it the call is given up (a read: the value is
   * built). Set it to the build's own deadline (see the class comment for why).
   */
  readTimeoutMs: number
  /**
   * False while the database is not open yet (start-up): reads and writes
   * are skipped without touching the breaker, which is for a database that
   * fails, not one still opening. Default: always available.
   */
  available?: () => boolean
  /**
   * A call is also given up when the database has answered nothing at all
   * (no call of this tier ended, well or badly) for this long while it waits:
   * a frozen or black-holed database, told apart from a slow one that is still
   * answering. Default 1000.
   */
  stallMs?: number
}

/** How a write ended: `existed` means a servable row was already there. */
export type DurableWriteOutcome = { written: boolean, existed: boolean } | 'failed'

class DatabaseOpeningError extends Error {
  override readonly name: string = 'DatabaseOpeningError'
}

class ReadTimeoutError extends Error {
  override readonly name: string = 'ReadTimeoutError'
}

class DatabaseStalledError extends Error {
  override readonly name: string = 'DatabaseStalledError'
}

/**
 * PostgreSQL behind its own breaker. A failed read is a miss, a failed write
 * is logged (the value is still in the store and in the answer).
 *
 * The rule for reads (issue 17): a read is given up only when the database is
 * down, or when waiting longer would cost more than the build would.
 * - Down: its breaker is open, or it has answered nothing at all, to any call
 *   of this tier, for `stallMs` (1 s) while the read waits: frozen, black-holed.
 *   A database that keeps answering other calls is slow, not down, and is waited for.
 * - Costing more than the build: past the build's own deadline (a model
 *   call's, for the adapters here), the request would have given up on it too.
 * Within that, a read is always waited for, however slow, because a read costs
 * nothing and a build (a model call) costs money, and a miss waits for the build anyway.
 * A fixed short deadline (it was 300 ms) is wrong under load: when Redis is
 * lost every key misses at once, the reads queue for the pool's connections,
 * the queue alone overruns the deadline, three of those open the breaker, and
 * for its cool-down every key already paid for is paid again (issue 17).
 * Build claims (src/swr/build-claims.ts) go through the same rule: guard().
 * The value is the adapter's: its repository turns entries into rows and back.
 */
export class DurableTier<V> {
  private readonly pending = new Set<Promise<unknown>>()
  /** Reads given up, by why: breaker open, past the budget, the database silent, the database failed it. */
  readonly readsGivenUp = { breakerOpen: 0, timeout: 0, stalled: 0, error: 0 }
  /** When a call of this tier last ended (answered or failed): the database's sign of life. */
  private lastAnswerAt = 0
  /** When a call was last given up because the database said nothing. */
  private lastStallAt = -1
  private readonly stallMs: number

  private readonly repository: DurableRepository<V>
  readonly breaker: CircuitBreaker
  private readonly logger: Logger
  private readonly options: DurableTierOptions

  constructor (repository: DurableRepository<V>, breaker: CircuitBreaker, logger: Logger, options: DurableTierOptions) {
    this.repository = repository
    this.breaker = breaker
    this.logger = logger
    this.options = options
    this.stallMs = options.stallMs ?? 1000
    if (!(options.readTimeoutMs > 0 && this.stallMs > 0)) throw new Error('durable tier readTimeoutMs and stallMs must be positive')
  }

  /**
   * Runs a database call under the tier's rule: through the breaker, given up
   * past the budget or when the database has gone silent (see the class comment).
   */
  async guard<T> (op: () => Promise<T>): Promise<T> {
    // Still opening (start-up) is not failing: the breaker is not told.
    if (this.options.available?.() === false) throw new DatabaseOpeningError('the database is still opening')
    return await this.breaker.run(async () => {
      const started = Date.now()
      const budget = this.options.readTimeoutMs
      let timer: NodeJS.Timeout | undefined
      const givenUp = new Promise<never>((_resolve, reject) => {
        const check = (): void => {
          const now = Date.now()
          if (now - started >= budget) return reject(new ReadTimeoutError(`durable call over ${budget} ms`))
          const silentFor = now - Math.max(started, this.lastAnswerAt)
          if (silentFor >= this.stallMs) {
            this.lastStallAt = now
            return reject(new DatabaseStalledError(`the database answered nothing for ${silentFor} ms`))
          }
          timer = setTimeout(check, Math.min(this.stallMs - silentFor, budget - (now - started)))
        }
        timer = setTimeout(check, Math.min(this.stallMs, budget))
      })
      try {
        return await Promise.race([this.answered(op()), givenUp])
      } finally {
        clearTimeout(timer)
      }
    })
  }

  /**
   * True from a call given up on the database's silence until any call ends:
   * a caller with a call of its own that can be skipped (a build claim, when
   * an earlier look or read was given up) skips it rather than wait out
   * another stall window. Reads never consult it: they, and the builds'
   * writes, are the probes that see the database answer again.
   */
  get silent (): boolean {
    return this.lastStallAt >= this.lastAnswerAt
  }

  /** Notes when a call ends, however it ends: the database is answering. */
  private async answered<T> (call: Promise<T>): Promise<T> {
    try {
      return await call
    } finally {
      this.lastAnswerAt = Date.now()
    }
  }

  async get (key: string): Promise<{ entry: Entry<V>, version: number } | null> {
    if (this.options.available?.() === false) return null
    if (!this.breaker.allows()) {
      this.readsGivenUp.breakerOpen++
      return null
    }
    try {
      return await this.lookup(() => this.repository.get(key))
    } catch (err) {
      this.logger.debug({ key, err: (err as Error).message }, 'durable read skipped')
      return null
    }
  }

  /**
   * A read under guard(), counted in readsGivenUp when it is given up or
   * fails: a row read, or a build claim's look (whose statement also says
   * whether the row is there, so a first build reads nothing else). Rejects as guard() does.
   */
  async lookup<T> (op: () => Promise<T>): Promise<T> {
    try {
      return await this.guard(op)
    } catch (err) {
      if (err instanceof ReadTimeoutError) this.readsGivenUp.timeout++
      else if (err instanceof DatabaseStalledError) this.readsGivenUp.stalled++
      else if (err instanceof BreakerOpenError) this.readsGivenUp.breakerOpen++
      else if (!(err instanceof DatabaseOpeningError)) this.readsGivenUp.error++
      throw err
    }
  }

  /**
   * Writes in the background; close() waits for what is in flight. The
   * promise, which never rejects, says how the write ended, for callers that
   * act once the row is there (releasing a build claim, counting a re-paid
   * generation).
   */
  put (key: string, entry: Entry<V>, version: number): Promise<DurableWriteOutcome> {
    if (this.options.available?.() === false) {
      this.logger.debug({ key }, 'durable write skipped: the database is still opening')
      return Promise.resolve('failed')
    }
    const write: Promise<DurableWriteOutcome> = this.breaker.run(() => this.answered(this.repository.write(key, entry, version)))
      .catch((err): DurableWriteOutcome => {
        this.logger.warn({ key, err: (err as Error).message }, 'durable write failed')
        return 'failed'
      })
      .finally(() => this.pending.delete(write))
    this.pending.add(write)
    return write
  }

  async close (): Promise<void> {
    await Promise.allSettled([...this.pending])
  }
}
