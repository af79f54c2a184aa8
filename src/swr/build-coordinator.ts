import { randomUUID } from 'node:crypto'
import type { GuardedStore } from './guarded-store.ts'
import type { Locks } from './locks.ts'
import type { LocalTier } from './local-tier.ts'
import type { Logger } from './logger.ts'
import { announcementChannel, failedBuildKey } from './keys.ts'

/** What a builder announces: the value landed, the build failed, or it gave the lock back unbuilt. */
export type BuildOutcome = 'ready' | 'failed' | 'released'

interface Waiter { wake: (outcome: BuildOutcome) => void }

/** Round trips of a poll that may be under way when a build fails; see markFailed. */
const FAILED_MARKER_SLACK_MS = 2000

export interface CoordinatorOptions {
  prefix: string
  /** The longest poll interval of a waiter: the failed-build marker outlives it. */
  pollMaxMs: number
}

/**
 * Builders and waiters across instances: a builder announces how its build
 * ended on a pub/sub channel, and waiters on any instance wake on it (with
 * polling as the safety net, see SwrEngine). The same channel carries
 * invalidations, which evict the in-process tier of every instance.
 */
export class BuildCoordinator {
  private readonly waiters = new Map<string, Set<Waiter>>()
  private unsubscribe: (() => Promise<void>) | undefined
  private closing = false
  /** Tags this instance's announcements, so it does not evict its own fresh writes. */
  private readonly instanceId = randomUUID()
  private readonly channel: string
  private readonly access: GuardedStore
  private readonly locks: Locks
  private readonly local: LocalTier<unknown> | undefined
  private readonly logger: Logger
  private readonly options: CoordinatorOptions

  constructor (access: GuardedStore, locks: Locks, local: LocalTier<unknown> | undefined, logger: Logger, options: CoordinatorOptions) {
    this.access = access
    this.locks = locks
    this.local = local
    this.logger = logger
    this.options = options
    this.channel = announcementChannel(options.prefix)
  }

  /** Subscribes to announcements. Without it waiters still poll. */
  async start (): Promise<void> {
    try {
      this.unsubscribe = await this.access.store.subscribe(this.channel, message => this.onAnnouncement(message))
    } catch (err) {
      this.logger.warn({ err }, 'could not subscribe to build announcements; waiters will poll')
    }
  }

  /** Frees a build's lock (`lock`, of `key`, taken with `ttlMs`) and says how the build ended. */
  async releaseAndAnnounce (key: string, lock: string, token: string, ttlMs: number, outcome: BuildOutcome): Promise<void> {
    // Sent back to back (one connection keeps their order), awaited together: a
    // frozen Redis costs one command timeout here, not two.
    await Promise.all([
      this.locks.release(lock, token, ttlMs),
      this.publish({ k: key, o: outcome, i: this.instanceId })
    ])
  }

  /** Resolves with the next announcement for `key`, or 'timeout' after `timeoutMs`. */
  async nextAnnouncement (key: string, timeoutMs: number): Promise<BuildOutcome | 'timeout'> {
    return await new Promise(resolve => {
      let set = this.waiters.get(key)
      if (set === undefined) {
        set = new Set()
        this.waiters.set(key, set)
      }
      const entries = set
      const timer = setTimeout(() => finish('timeout'), timeoutMs)
      const waiter: Waiter = { wake: outcome => finish(outcome) }
      const waiters = this.waiters
      function finish (outcome: BuildOutcome | 'timeout'): void {
        clearTimeout(timer)
        entries.delete(waiter)
        if (entries.size === 0 && waiters.get(key) === entries) waiters.delete(key)
        resolve(outcome)
      }
      entries.add(waiter)
      if (this.closing) finish('timeout')
    })
  }

  /**
   * Lives one longest poll interval, so it covers every waiter whose poll is
   * already scheduled even if the announcement never comes, plus time for that
   * poll's own round trips (entry, lock, marker). It is not a negative cache: a
   * fresh request arriving later still builds.
   */
  async markFailed (key: string): Promise<void> {
    const ttlMs = this.options.pollMaxMs + FAILED_MARKER_SLACK_MS
    await this.access.run(s => s.set(failedBuildKey(key), '1', ttlMs)).catch(() => {})
  }

  /** False when the store cannot tell: the waiter then builds, as it did before there was a marker. */
  async buildJustFailed (key: string): Promise<boolean> {
    try {
      return (await this.access.run(s => s.get(failedBuildKey(key)))) !== null
    } catch {
      return false
    }
  }

  /**
   * Tells every instance (this one included) to forget what its in-process
   * tier holds for a key, or for every key matching a glob.
   */
  async invalidate (target: { key: string } | { pattern: string }): Promise<void> {
    if ('key' in target) this.local?.delete(target.key)
    else this.local?.deleteMatching(target.pattern)
    await this.publish('key' in target ? { k: target.key, o: 'invalidate', i: this.instanceId } : { p: target.pattern, o: 'invalidate', i: this.instanceId })
  }

  private async publish (message: object): Promise<void> {
    await this.access.run(s => s.publish(this.channel, JSON.stringify(message))).catch(() => {})
  }

  private onAnnouncement (message: string): void {
    let parsed: { k?: unknown, o?: unknown, p?: unknown, i?: unknown }
    try { parsed = JSON.parse(message) } catch { return }
    const mine = parsed.i === this.instanceId
    if (parsed.o === 'invalidate' && mine) return
    if (parsed.o === 'invalidate' && typeof parsed.p === 'string') {
      this.local?.deleteMatching(parsed.p)
      return
    }
    if (typeof parsed.k !== 'string') return
    // A key was written (or deleted) somewhere: what this process remembers of it may be old.
    if ((parsed.o === 'ready' && !mine) || parsed.o === 'invalidate') this.local?.delete(parsed.k)
    if (parsed.o === 'invalidate') return
    const set = this.waiters.get(parsed.k)
    if (set === undefined) return
    this.waiters.delete(parsed.k)
    const outcome: BuildOutcome = parsed.o === 'failed' || parsed.o === 'released' ? parsed.o : 'ready'
    for (const waiter of set) waiter.wake(outcome)
  }

  /** Closing: every waiter wakes now (and then gives up), and new ones do not wait. */
  wakeAll (): void {
    this.closing = true
    for (const set of this.waiters.values()) for (const w of set) w.wake('ready')
  }

  async stop (): Promise<void> {
    await this.unsubscribe?.().catch(() => {})
  }
}
