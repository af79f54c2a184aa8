import { randomUUID } from 'node:crypto'
import type { BackgroundWork } from './background.ts'
import type { BuildCoordinator } from './build-coordinator.ts'
import type { DurableTier } from './durable-tier.ts'
import { refreshLockKey } from './keys.ts'
import type { Locks } from './locks.ts'
import type { Logger } from './logger.ts'
import type { TieredStore } from './tiered-store.ts'
import { describe, type BuildReason, type BuildSpec, type Entry } from './types.ts'

export interface RefreshCounters {
  refreshStarted: number
  refreshSkippedLocked: number
  refreshSucceeded: number
  refreshFailed: number
}

export interface RefresherDeps<V> {
  locks: Locks
  tiers: TieredStore<V>
  durable?: DurableTier<V>
  coordinator: BuildCoordinator
  background: BackgroundWork
  logger: Logger
  counters: RefreshCounters
  clock: () => number
  /** Runs a build as the engine does (counted, timed). */
  runBuild: (key: string, spec: BuildSpec<V>, reason: BuildReason) => Promise<{ value: V }>
  /** The entry a new value makes, keeping the first write's creation time. */
  entryFor: (value: V, createdAt: number, refreshedAt: number) => Entry<V>
  /** The refresh lock's TTL: the refresh's deadline plus a margin. */
  lockTtlMs: number
  closing: () => boolean
}

/**
 * Stale-while-revalidate: a stale entry is answered at once and rebuilt in
 * the background, once per key in this process and once across every
 * instance (the refresh lock). A failed refresh leaves the stale entry in place.
 */
export class Refresher<V> {
  private readonly refreshing = new Set<string>()
  private readonly deps: RefresherDeps<V>

  constructor (deps: RefresherDeps<V>) {
    this.deps = deps
  }

  isRefreshing (key: string): boolean {
    return this.refreshing.has(key)
  }

  /** Starts a background refresh of `key` unless one is under way here (or the engine is closing). */
  schedule (key: string, spec: BuildSpec<V>, entry: Entry<V>): void {
    if (this.deps.closing() || this.refreshing.has(key)) return
    this.refreshing.add(key)
    this.deps.background.track(this.refresh(key, spec, entry)
      .then(() => {}, err => this.deps.logger.error({ key, err: describe(err) }, 'refresh crashed'))
      .finally(() => { this.refreshing.delete(key) }))
  }

  /** Refreshes now, and says how it went; 'locked' when another refresh of the key is under way. */
  async refreshNow (key: string, spec: BuildSpec<V>, entry: Entry<V>): Promise<'refreshed' | 'locked' | 'failed'> {
    if (this.refreshing.has(key)) return 'locked'
    this.refreshing.add(key)
    try {
      return await this.refresh(key, spec, entry)
    } finally {
      this.refreshing.delete(key)
    }
  }

  private async refresh (key: string, spec: BuildSpec<V>, entry: Entry<V>): Promise<'refreshed' | 'locked' | 'failed'> {
    const { locks, counters } = this.deps
    const lock = refreshLockKey(key)
    const token = randomUUID()
    const acquired = (await locks.tryLock(lock, token, this.deps.lockTtlMs)) === true
    if (!acquired) {
      counters.refreshSkippedLocked++
      return 'locked'
    }
    counters.refreshStarted++
    const version = this.deps.clock()
    try {
      const { value } = await this.deps.runBuild(key, spec, 'refresh')
      const refreshed = this.deps.entryFor(value, entry.createdAt, this.deps.clock())
      const encoded = this.deps.tiers.encode(key, refreshed, version)
      if (encoded === undefined) throw new Error('the refreshed value cannot be stored')
      this.deps.durable?.put(key, refreshed, version)
      await this.deps.tiers.put(key, encoded, version)
      counters.refreshSucceeded++
      await this.deps.coordinator.invalidate({ key })
      return 'refreshed'
    } catch (err) {
      counters.refreshFailed++
      this.deps.logger.warn({ key, err: describe(err) }, 'refresh failed; the stale entry stays')
      return 'failed'
    } finally {
      await locks.release(lock, token, this.deps.lockTtlMs)
    }
  }
}
