import type { GuardedStore } from './guarded-store.ts'

/** How often releases that Redis did not answer are tried again. */
const RELEASE_RETRY_MS = 500

/**
 * Token-checked locks in the store (SET NX PX, compare-and-delete): one
 * holder per key across every instance. What this process holds is
 * remembered, so close() can give it all back; a release Redis does not
 * answer is retried in the background until the lock would have expired.
 */
export class Locks {
  private readonly held = new Map<string, string>()
  private readonly pendingReleases = new Map<string, { token: string, until: number }>()
  private releaseTimer: NodeJS.Timeout | undefined
  private readonly access: GuardedStore
  private readonly clock: () => number

  constructor (access: GuardedStore, clock: () => number = Date.now) {
    this.access = access
    this.clock = clock
  }

  /** Locks this process holds now. */
  get heldCount (): number {
    return this.held.size
  }

  /**
   * True when taken, false when someone else holds it, undefined when the
   * store failed. A command that timed out may still run later (a frozen or
   * paused Redis): the compare-and-delete is sent right behind it on the same
   * connection, so a late SET leaves no lock that nobody holds.
   */
  async tryLock (lock: string, token: string, ttlMs: number): Promise<boolean | undefined> {
    try {
      const acquired = await this.access.run(s => s.acquireLock(lock, token, ttlMs))
      if (acquired) this.held.set(lock, token)
      return acquired
    } catch {
      this.release(lock, token, ttlMs).catch(() => {})
      return undefined
    }
  }

  /**
   * Frees a lock this process took (`ttlMs`: the TTL it was taken with). When
   * Redis does not answer, the release is retried until the lock would have
   * expired anyway, so a lost connection does not block the key for its whole TTL.
   */
  async release (lock: string, token: string, ttlMs: number): Promise<void> {
    this.held.delete(lock)
    try {
      await this.access.store.releaseLock(lock, token)
      this.pendingReleases.delete(lock)
    } catch {
      if (!this.pendingReleases.has(lock)) this.pendingReleases.set(lock, { token, until: this.clock() + ttlMs })
      this.scheduleReleaseRetry()
    }
  }

  private scheduleReleaseRetry (): void {
    if (this.releaseTimer !== undefined || this.pendingReleases.size === 0) return
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = undefined
      const now = this.clock()
      for (const [lock, { token, until }] of [...this.pendingReleases]) {
        if (until <= now) this.pendingReleases.delete(lock)
        else this.access.store.releaseLock(lock, token).then(() => { this.pendingReleases.delete(lock) }, () => {})
      }
      this.scheduleReleaseRetry()
    }, RELEASE_RETRY_MS)
    this.releaseTimer.unref()
  }

  /** Gives back every lock held or owed (on close); never rejects. */
  async releaseAll (): Promise<void> {
    clearTimeout(this.releaseTimer)
    const owed = [...this.held, ...[...this.pendingReleases].map(([lock, p]) => [lock, p.token] as const)]
    await Promise.all(owed.map(async ([lock, token]) => { await this.access.store.releaseLock(lock, token).catch(() => {}) }))
    this.held.clear()
    this.pendingReleases.clear()
  }
}
