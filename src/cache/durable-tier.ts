import type { CachedNarrative } from './codec.js'
import { BreakerOpenError, type CircuitBreaker } from './breaker.js'
import type { Logger } from './logger.js'

/** What the durable tier needs from its repository (src/db). */
export interface DurableRepository {
  get (key: string): Promise<{ entry: CachedNarrative, version: number } | null>
  /** Newer-wins write; `existed`: a row of the same engine version was there before (the narrative was paid for already). */
  write (key: string, entry: CachedNarrative, version: number, profile: object, locale: string): Promise<{ written: boolean, existed: boolean }>
}

export interface DurableTierOptions {
  /**
   * The read's budget: past it the read is given up and the model is asked.
   * Set it to the model's own deadline (see the class comment for why).
   */
  readTimeoutMs: number
}

/** How a write ended: `existed` means a row of this engine version was already there. */
export type DurableWriteOutcome = { written: boolean, existed: boolean } | 'failed'

class ReadTimeoutError extends Error {
  override readonly name: string = 'ReadTimeoutError'
}

/**
 * PostgreSQL behind its own breaker. A failed read is a miss, a failed write
 * is logged (the narrative is still in Redis and in the answer).
 *
 * The rule for reads (issue 17): a read is given up only when the database is
 * down (its breaker is open) or when waiting longer would cost more than the
 * model would, that is past the model's own deadline: by then the request
 * would have given up on the model too. Within that budget a read is always
 * waited for, however slow, because a read costs nothing and a model call
 * costs money, and a miss waits for the model anyway. A short deadline (it was
 * 300 ms) is wrong under load: when Redis is lost, every key misses at once,
 * the reads queue for the pool's connections, the queue alone overruns the
 * deadline, three of those open the breaker, and for its cool-down every key
 * already paid for is paid again. PostgreSQL's own timeouts (connection and
 * statement, src/db/database.ts) still fail a read of a database that does not
 * answer, well within the budget, and those open the breaker.
 */
export class DurableTier {
  private readonly pending = new Set<Promise<unknown>>()
  /** Reads given up, by why: the breaker was open, the budget ran out, the database failed it. */
  readonly readsGivenUp = { breakerOpen: 0, timeout: 0, error: 0 }

  constructor (
    private readonly repository: DurableRepository,
    readonly breaker: CircuitBreaker,
    private readonly logger: Logger,
    private readonly options: DurableTierOptions
  ) {}

  async get (key: string): Promise<{ entry: CachedNarrative, version: number } | null> {
    if (!this.breaker.allows()) {
      this.readsGivenUp.breakerOpen++
      return null
    }
    try {
      return await this.breaker.run(async () => {
        let timer: NodeJS.Timeout | undefined
        const deadline = new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => reject(new ReadTimeoutError(`durable read over ${this.options.readTimeoutMs} ms`)), this.options.readTimeoutMs)
        })
        try {
          return await Promise.race([this.repository.get(key), deadline])
        } finally {
          clearTimeout(timer)
        }
      })
    } catch (err) {
      if (err instanceof ReadTimeoutError) this.readsGivenUp.timeout++
      else if (err instanceof BreakerOpenError) this.readsGivenUp.breakerOpen++
      else this.readsGivenUp.error++
      this.logger.debug({ key, err: (err as Error).message }, 'durable read skipped')
      return null
    }
  }

  /**
   * Writes in the background; close() waits for what is in flight. The
   * promise, which never rejects, says how the write ended, for callers that
   * act once the row is there (releasing a build claim, counting a re-paid
   * generation).
   */
  put (key: string, entry: CachedNarrative, version: number, profile: object, locale: string): Promise<DurableWriteOutcome> {
    const write: Promise<DurableWriteOutcome> = this.breaker.run(() => this.repository.write(key, entry, version, profile, locale))
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
