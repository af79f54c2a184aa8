import type { Logger } from './logger.ts'

/**
 * A durable record that a build is under way (src/db/build-claims-repository.ts
 * keeps it in PostgreSQL). Redis locks vanish with a FLUSHALL, a restart
 * without persistence or a failover to a replica that never saw them; a claim
 * does not, so an instance that wins a fresh Redis lock for a key another
 * instance is still building waits for that build instead of paying for it
 * again. A claim expires like a lock, so a dead instance's claim frees itself.
 */
export interface BuildClaimStore {
  /**
   * Takes the claim on `key` for `owner` for `ttlMs` (measured on the
   * database's clock, so instances' clocks need not agree), unless another
   * owner holds one that has not expired. In the same round trip, says whether
   * the durable tier holds a row for the key: a build that landed since the
   * caller read it (of `entryVersion`, the engine version it can serve).
   *
   * A live failed-build marker (see fail()) is taken over like a free key when
   * `takeFailed` is true (a new request tries the model again), and left alone
   * otherwise; `failed` says whether one was there when the statement began.
   */
  claim (key: string, owner: string, ttlMs: number, entryVersion: string, takeFailed: boolean): Promise<{ won: boolean, built: boolean, failed: boolean }>
  /** Deletes the claim if `owner` still holds it. */
  release (key: string, owner: string): Promise<void>
  /**
   * Turns `owner`'s claim into a failed-build marker that lives `markerMs`:
   * the build it covered failed (its model call may well have been paid).
   */
  fail (key: string, owner: string, markerMs: number): Promise<void>
}

/**
 * - won: nobody else is building the key: build it, then release() (or fail()).
 * - built: the durable tier has the key now: read it there, do not build.
 * - failed: the build this call waited for failed: answer without building,
 *   as a waiter on a Redis lock does when its builder announces a failure.
 * - unavailable: PostgreSQL cannot say (down, breaker open): build without a
 *   claim. With Redis lost at the same moment, two instances may then pay for
 *   one key; that is the guarantee's stated limit.
 * - timeout: another instance held the claim past `waitMs`: answer without
 *   building (as a waiter on a Redis lock does), never pay a second time.
 */
export type ClaimOutcome = 'won' | 'built' | 'failed' | 'unavailable' | 'timeout'

export interface BuildClaimsOptions {
  /** How long a claim lives unless released: the longest build it covers, like a lock. */
  ttlMs: number
  /** Backoff between two looks at another instance's claim. */
  pollMinMs: number
  pollMaxMs: number
  /**
   * How long a failed build's marker lives (default pollMaxMs + 2000): one
   * longest wait between two looks and their round trips, so every waiter
   * sees it. It is not a negative cache: a new request still builds.
   */
  failedMarkerMs?: number
  /** The engine version of the rows that count as built (an older version's row is rebuilt). */
  entryVersion: string
  clock?: () => number
}

/** Runs a database call, or rejects when it is given up (the durable tier's guard: breaker, budget, stall). */
export type DatabaseGuard = <T>(op: () => Promise<T>) => Promise<T>

/**
 * The rules the claims' database calls go through. The durable tier
 * (src/swr/durable-tier.ts) is one, passed as it is: claims and reads then
 * share one verdict on whether the database is up.
 */
export interface ClaimDatabase {
  /** Runs releases and failed builds' markers (and looks, without `lookup`). */
  guard: DatabaseGuard
  /**
   * Runs a claim's look, which also reads whether the row is there: the
   * durable tier's lookup() counts the looks given up with its reads.
   */
  lookup?: DatabaseGuard
  /** True while the database is known to say nothing: no claim is tried then. */
  readonly silent?: boolean
}

/**
 * Takes and waits on build claims for the engine. Calls go through the
 * durable tier's guard (its breaker and rule), so a database that is down
 * costs one failed call, not a wait.
 */
export class BuildClaims {
  private readonly clock: () => number
  readonly counters = { won: 0, waited: 0, built: 0, failed: 0, unavailable: 0, timeouts: 0 }

  private readonly store: BuildClaimStore
  private readonly database: ClaimDatabase
  private readonly logger: Logger
  private readonly options: BuildClaimsOptions

  constructor (store: BuildClaimStore, database: ClaimDatabase, logger: Logger, options: BuildClaimsOptions) {
    this.store = store
    this.database = database
    this.logger = logger
    this.options = options
    if (!(options.ttlMs > 0)) throw new Error('build claims ttlMs must be positive')
    if (!(options.pollMinMs > 0 && options.pollMaxMs >= options.pollMinMs)) throw new Error('build claims pollMinMs must be positive and at most pollMaxMs')
    this.clock = options.clock ?? Date.now
  }

  /**
   * One look at the claim on `key`, never waiting: its outcome now, or
   * 'held' while another owner holds a live claim. `takeFailed`: a failed
   * build's marker is taken over (a new request tries the model again);
   * otherwise it is answered 'failed'. A builder sends its first look beside
   * its lock request and hands it to acquire() (a database round trip less
   * before the build); one that then loses the lock releases what it won.
   */
  async attempt (key: string, owner: string, takeFailed: boolean): Promise<ClaimOutcome | 'held'> {
    let answer: { won: boolean, built: boolean, failed: boolean }
    try {
      const { database } = this
      if (database.silent === true) throw new Error('the database is silent')
      const look = async (): Promise<{ won: boolean, built: boolean, failed: boolean }> => await this.store.claim(key, owner, this.options.ttlMs, this.options.entryVersion, takeFailed)
      answer = await (database.lookup !== undefined ? database.lookup(look) : database.guard(look))
    } catch (err) {
      this.counters.unavailable++
      this.logger.debug({ key, err: (err as Error).message }, 'build claim unavailable: building without one')
      return 'unavailable'
    }
    if (answer.built) {
      // Our own claim is of no use: the key is built.
      if (answer.won) this.releaseQuietly(key, owner)
      this.counters.built++
      return 'built'
    }
    if (answer.won) {
      this.counters.won++
      return 'won'
    }
    if (answer.failed && !takeFailed) {
      this.counters.failed++
      return 'failed'
    }
    return 'held'
  }

  /**
   * Claims `key` for `owner`, waiting up to `waitMs` while another owner holds
   * a live claim (it is building: its row lands, or its claim is released or
   * expires, and then this one is taken). A call that has waited for a build
   * (here, or on a lock before it came here: `waiting`) and finds that build
   * failed gets 'failed', never the claim: one failed build is one model call
   * paid, not one per waiter. `firstLook`: an attempt() already sent for this
   * owner (with takeFailed = !waiting), taken as the first look.
   */
  async acquire (key: string, owner: string, waitMs: number, waiting = false, firstLook?: Promise<ClaimOutcome | 'held'>): Promise<ClaimOutcome> {
    const deadline = this.clock() + waitMs
    let delay = this.options.pollMinMs
    let look = firstLook ?? this.attempt(key, owner, !waiting)
    let waited = false
    for (;;) {
      const outcome = await look
      if (outcome !== 'held') return outcome
      if (!waited) this.counters.waited++
      waited = true
      const left = deadline - this.clock()
      if (left <= 0) {
        this.counters.timeouts++
        return 'timeout'
      }
      await new Promise(resolve => setTimeout(resolve, Math.min(delay, left)))
      delay = Math.min(delay * 2, this.options.pollMaxMs)
      // Having waited, a failed build's marker is this call's answer, not a key to take.
      look = this.attempt(key, owner, false)
    }
  }

  /** Frees a claim taken by acquire(); never rejects (an unreleased claim expires). */
  async release (key: string, owner: string): Promise<void> {
    try {
      await this.database.guard(() => this.store.release(key, owner))
    } catch (err) {
      this.logger.debug({ key, err: (err as Error).message }, 'build claim not released: it expires')
    }
  }

  /**
   * Marks the claim `owner` took as a failed build (see acquire); never
   * rejects (a claim that could not be marked stays until it expires: its
   * waiters give up on it, or take it over then).
   */
  async fail (key: string, owner: string): Promise<void> {
    try {
      await this.database.guard(() => this.store.fail(key, owner, this.options.failedMarkerMs ?? this.options.pollMaxMs + 2000))
    } catch (err) {
      this.logger.debug({ key, err: (err as Error).message }, 'failed build not marked on its claim: it expires')
    }
  }

  private releaseQuietly (key: string, owner: string): void {
    this.release(key, owner).catch(() => {})
  }
}
