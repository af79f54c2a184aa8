import type { CachedNarrative } from './codec.js'
import type { CircuitBreaker } from './breaker.js'
import type { Logger } from './logger.js'

/** What the durable tier needs from its repository (src/db). */
export interface DurableRepository {
  get (key: string): Promise<{ entry: CachedNarrative, version: number } | null>
  upsert (key: string, entry: CachedNarrative, version: number, profile: object, locale: string): Promise<boolean>
}

export interface DurableTierOptions {
  /** A read slower than this is given up on: the request goes on without it. */
  readTimeoutMs: number
  /**
   * False while the database is not open yet (start-up): reads and writes
   * are skipped without touching the breaker, which is for a database that
   * fails, not one still opening. Default: always available.
   */
  available?: () => boolean
}

class ReadTimeoutError extends Error {
  override readonly name: string = 'ReadTimeoutError'
}

/**
 * PostgreSQL behind its own breaker and a short read deadline, so a slow or
 * dead database never slows an answer: a failed read is a miss, a failed write
 * is logged (the narrative is still in Redis and in the answer).
 */
export class DurableTier {
  private readonly pending = new Set<Promise<unknown>>()

  constructor (
    private readonly repository: DurableRepository,
    readonly breaker: CircuitBreaker,
    private readonly logger: Logger,
    private readonly options: DurableTierOptions
  ) {}

  async get (key: string): Promise<{ entry: CachedNarrative, version: number } | null> {
    if (this.options.available?.() === false || !this.breaker.allows()) return null
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
      this.logger.debug({ key, err: (err as Error).message }, 'durable read skipped')
      return null
    }
  }

  /** Writes in the background; close() waits for what is in flight. */
  put (key: string, entry: CachedNarrative, version: number, profile: object, locale: string): void {
    if (this.options.available?.() === false) {
      this.logger.debug({ key }, 'durable write skipped: the database is still opening')
      return
    }
    const write = this.breaker.run(() => this.repository.upsert(key, entry, version, profile, locale))
      .catch(err => this.logger.warn({ key, err: (err as Error).message }, 'durable write failed'))
      .finally(() => this.pending.delete(write))
    this.pending.add(write)
  }

  async close (): Promise<void> {
    await Promise.allSettled([...this.pending])
  }
}
