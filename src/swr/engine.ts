import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { BackgroundWork } from './background.ts'
import type { CircuitBreaker } from './breaker.ts'
import { BuildCoordinator } from './build-coordinator.ts'
import type { BuildClaims, ClaimOutcome } from './build-claims.ts'
import type { EntryCodec } from './codec.ts'
import type { DurableTier, DurableWriteOutcome } from './durable-tier.ts'
import { GuardedStore } from './guarded-store.ts'
import { lockKey } from './keys.ts'
import type { LocalTier } from './local-tier.ts'
import { Locks } from './locks.ts'
import type { Logger } from './logger.ts'
import { Refresher } from './refresher.ts'
import { SingleFlight } from './single-flight.ts'
import type { CacheStore } from './store.ts'
import { TieredStore } from './tiered-store.ts'
import {
  BuildFailedError, BuildRefusedError, describe,
  type BuildReason, type BuildSpec, type Entry, type Resolution
} from './types.ts'

export interface EngineOptions {
  /** Namespace of the engine's announcement channel. */
  prefix: string
  ttlSeconds: number
  staleSeconds: number
  /** The longest a request's build takes (its own deadline, retries included): its lock lives this plus the margin. */
  buildDeadlineMs: number
  /** The same for a background refresh. */
  refreshDeadlineMs: number
  /** How long a call waits for another instance's build before it falls back. */
  maxWaitMs: number
  /** First and largest poll interval of a waiter: the safety net under pub/sub. */
  pollMinMs: number
  pollMaxMs: number
  /** Added to a lock's deadline to make its TTL (default 5000): writes and releases after the build. */
  lockMarginMs?: number
}

export interface EngineEvents<V> {
  /** A value written to the store, with its encoded size. */
  stored?: (bytes: number) => void
  /** A request's build whose durable write found the value already there: it was paid for twice. */
  repaid?: (key: string, value: V) => void
}

export interface EngineDeps<V> {
  store: CacheStore
  /** Guards every store call. */
  breaker: CircuitBreaker
  /** Entries to bytes and back: the adapter's. */
  codec: EntryCodec<V>
  logger: Logger
  clock?: () => number
  options: EngineOptions
  /** PostgreSQL (or PGlite): read before a build, written after one. */
  durable?: DurableTier<V>
  /** The in-process first tier: fresh entries served with no round trip. */
  local?: LocalTier<V>
  /** Durable build claims (with the durable tier): a build outlives a store that lost its lock. */
  claims?: BuildClaims
  /** The locks to build under (plugins/locks.ts); by default the engine's own, on `store`. */
  locks?: Locks
  events?: EngineEvents<V>
}

export interface EngineCounters {
  hits: number
  staleHits: number
  durableHits: number
  misses: number
  /** Calls answered by a build another call started (in this process or on another instance). */
  coalesced: number
  fallbacks: number
  builds: number
  refreshStarted: number
  refreshSkippedLocked: number
  refreshSucceeded: number
  refreshFailed: number
  corruptEntries: number
  storeErrors: number
  storeTimeouts: number
  /** Request builds of a key the durable tier already held (see EngineEvents.repaid). */
  repaidBuilds: number
}

/**
 * The stale-while-revalidate engine. It caches opaque values (an adapter
 * gives the codec, the build and the fallback) in tiers: in-process, the
 * store (Redis or in-process), durable. One build per key across every
 * instance (SingleFlight in this process, a Locks lock across instances, a
 * BuildCoordinator to wake waiters, BuildClaims when the store loses its
 * locks); newer-wins writes; background refresh of stale entries (Refresher);
 * and a path for every dependency that fails. Plain class, dependencies
 * injected: it runs the same inside or outside Fastify.
 */
export class SwrEngine<V> {
  readonly counters: EngineCounters = {
    hits: 0, staleHits: 0, durableHits: 0, misses: 0, coalesced: 0, fallbacks: 0, builds: 0, refreshStarted: 0, refreshSkippedLocked: 0, refreshSucceeded: 0, refreshFailed: 0, corruptEntries: 0, storeErrors: 0, storeTimeouts: 0, repaidBuilds: 0
  }

  private readonly flights = new SingleFlight<Resolution<V>>()
  /** Entries built here that have been answered with, on their way to the store. */
  private readonly landing = new Map<string, Entry<V>>()
  private readonly background: BackgroundWork
  private readonly access: GuardedStore
  private readonly locks: Locks
  private readonly coordinator: BuildCoordinator
  private readonly tiers: TieredStore<V>
  private readonly refresher: Refresher<V>
  private readonly clock: () => number
  private readonly buildLockTtlMs: number
  private closing = false
  private readonly shutdown = new AbortController()
  /** Names this instance's build claims. */
  private readonly instanceId = randomUUID()
  private readonly deps: EngineDeps<V>

  constructor (deps: EngineDeps<V>) {
    this.deps = deps
    const o = deps.options
    if (!(o.staleSeconds > 0 && o.staleSeconds < o.ttlSeconds)) throw new Error('engine staleSeconds must be positive and below ttlSeconds')
    if (!(o.maxWaitMs > 0)) throw new Error('engine maxWaitMs must be positive')
    if (!(o.buildDeadlineMs > 0 && o.refreshDeadlineMs > 0)) throw new Error('engine buildDeadlineMs and refreshDeadlineMs must be positive')
    if (!(o.pollMinMs > 0 && o.pollMaxMs >= o.pollMinMs)) throw new Error('engine pollMinMs must be positive and at most pollMaxMs')
    this.clock = deps.clock ?? Date.now
    // Every build in flight listens to it: as many listeners as builds, not a leak.
    setMaxListeners(0, this.shutdown.signal)
    // Each lock must outlive the build it protects, or a second builder starts;
    // and no longer: a holder that dies leaves its keys blocked for the whole TTL.
    const margin = o.lockMarginMs ?? 5000
    this.buildLockTtlMs = o.buildDeadlineMs + margin
    this.background = new BackgroundWork(deps.logger)
    this.access = new GuardedStore(deps.store, deps.breaker, this.counters)
    this.locks = deps.locks ?? new Locks(this.access, this.clock)
    this.coordinator = new BuildCoordinator(this.access, this.locks, deps.local as LocalTier<unknown> | undefined, deps.logger, { prefix: o.prefix, pollMaxMs: o.pollMaxMs })
    this.tiers = new TieredStore(this.access, deps.codec, deps.local, deps.logger, { ttlMs: o.ttlSeconds * 1000, stored: deps.events?.stored }, () => { this.counters.corruptEntries++ })
    this.refresher = new Refresher({
      locks: this.locks,
      tiers: this.tiers,
      durable: deps.durable,
      coordinator: this.coordinator,
      background: this.background,
      logger: deps.logger,
      counters: this.counters,
      clock: this.clock,
      runBuild: async (key, spec, reason) => await this.runBuild(spec, reason, true),
      entryFor: (value, createdAt, refreshedAt) => this.entryFor(value, createdAt, refreshedAt),
      lockTtlMs: o.refreshDeadlineMs + margin,
      closing: () => this.closing
    })
  }

  /** Subscribes to build announcements. Without it waiters still poll. */
  async start (): Promise<void> {
    await this.coordinator.start()
  }

  get locksHeld (): number {
    return this.locks.heldCount
  }

  /** A fresh entry of the in-process tier, counted as a hit; undefined when the answer needs anything more. */
  localHit (key: string, minWrittenAt?: number): Resolution<V> | undefined {
    const local = this.deps.local?.get(key)
    if (local === undefined || this.clock() >= local.staleAfter || tooOld(local, minWrittenAt)) return undefined
    this.counters.hits++
    return { status: 'hit', key, value: local.value, writtenAt: local.refreshedAt, built: false }
  }

  /**
   * The entry a key holds (in-process tier, an entry built here on its way to
   * the store, then the store), read without building, refreshing or
   * counting: null when there is none, undefined when the store cannot say.
   */
  async peek (key: string): Promise<Entry<V> | null | undefined> {
    const held = this.deps.local?.get(key) ?? this.landing.get(key)
    if (held !== undefined) return held
    return await this.tiers.read(key)
  }

  /**
   * The value for `key`: from a tier when one holds it (a stale one is
   * answered and refreshed), else built once (spec.build) for every
   * concurrent caller on every instance. Concurrent calls in this process
   * share one promise before anything touches the store.
   *
   * `minWrittenAt`: an entry written before it counts as missing, so it is
   * built again and replaced (newer wins), still once for every concurrent
   * caller that asks the same (HTTP's `no-cache` is the call's own start,
   * `max-age=N` is N seconds before it).
   */
  async getOrBuild (key: string, spec: BuildSpec<V>, options: { minWrittenAt?: number } = {}): Promise<Resolution<V>> {
    const min = options.minWrittenAt
    const local = this.localHit(key, min)
    if (local !== undefined) return local
    // Just built here and on its way to the store: a hit from the entry in
    // hand, rather than a read of the store before the write lands (or, with
    // Redis slow, a wait on it).
    const landing = this.landing.get(key)
    if (landing !== undefined && this.clock() < landing.staleAfter && !tooOld(landing, min)) {
      this.counters.hits++
      return { status: 'hit', key, value: landing.value, writtenAt: landing.refreshedAt, built: false }
    }
    // Calls that refuse older entries share a flight of their own.
    const flight = min === undefined ? key : `${key}\u0000fresh`
    const shared = this.flights.current(flight)
    if (shared !== undefined) {
      let leader: Resolution<V>
      try {
        leader = await shared
      } catch (err) {
        // The leader's admission said no; this call has its own to try.
        if (err instanceof BuildRefusedError) return await this.getOrBuild(key, spec, options)
        throw err
      }
      if (leader.status !== 'miss' && leader.status !== 'coalesced') return { ...leader, built: false, buildMs: undefined }
      this.counters.coalesced++
      return { ...leader, status: 'coalesced', built: false, buildMs: undefined }
    }
    return await this.flights.lead(flight, () => this.lookupOrBuild(key, spec, min))
  }

  private async lookupOrBuild (key: string, spec: BuildSpec<V>, min: number | undefined): Promise<Resolution<V>> {
    const entry = await this.tiers.read(key)
    if (entry === undefined) return await this.buildWithoutStore(key, spec, min)
    if (entry !== null && !tooOld(entry, min)) return this.fromEntry(key, spec, entry, true)
    return await this.build(key, spec, min)
  }

  /**
   * Makes sure a key holds a fresh entry: skipped when it already does, built
   * (under the same lock as a call) when missing, refreshed now (under the
   * refresh lock) when stale. A fallback counts as failed: it is never stored.
   */
  async warm (key: string, spec: BuildSpec<V>): Promise<'warmed' | 'skipped' | 'failed'> {
    const entry = await this.tiers.read(key)
    if (entry === undefined) return 'failed'
    if (entry !== null) {
      if (this.clock() < entry.staleAfter) return 'skipped'
      const outcome = await this.refresher.refreshNow(key, spec, entry)
      return outcome === 'refreshed' ? 'warmed' : outcome === 'locked' ? 'skipped' : 'failed'
    }
    const result = await this.getOrBuild(key, spec)
    if (result.status === 'fallback') return 'failed'
    // A durable row re-populated the store: warm now, and no build was needed.
    return result.status === 'miss' || result.status === 'durable' ? 'warmed' : 'skipped'
  }

  /** A fresh or stale answer from a decoded entry; a stale one schedules its refresh. */
  private fromEntry (key: string, spec: BuildSpec<V>, entry: Entry<V>, countIt: boolean): Resolution<V> {
    const stale = this.clock() >= entry.staleAfter
    if (stale) {
      if (countIt) this.counters.staleHits++
      this.refresher.schedule(key, spec, entry)
    } else {
      this.deps.local?.set(key, entry)
      if (countIt) this.counters.hits++
    }
    return { status: stale ? 'stale' : 'hit', key, value: entry.value, writtenAt: entry.refreshedAt, built: false }
  }

  /** A miss: become the one builder for this key, or wait for the one there is. */
  private async build (key: string, spec: BuildSpec<V>, min?: number): Promise<Resolution<V>> {
    const token = randomUUID()
    // The builder's first database step goes out with the lock request rather
    // than after it, so its round trip overlaps the lock's: the first look at
    // the build claim, whose statement also says whether the key's row is in
    // the durable tier (then, and only then, the row is read: see
    // buildAndStore). Without claims, the durable read itself goes out. Only
    // one call per key in this process gets here, the others share its
    // promise, so losing the lock wastes at most one statement per instance;
    // a claim won then is released at once.
    const durableRead = this.deps.claims === undefined ? this.deps.durable?.get(key) : undefined
    const owner = this.claimOwner(token)
    const firstLook = this.deps.claims?.attempt(key, owner, true)
    const acquired = await this.locks.tryLock(lockKey(key), token, this.buildLockTtlMs)
    if (acquired === undefined) return await this.buildWithoutStore(key, spec, min, false, { token, durableRead, firstLook })
    if (acquired) return await this.buildAndStore(key, spec, token, min, durableRead, false, firstLook)
    this.releaseIfWon(key, owner, firstLook)
    return await this.waitForBuilder(key, spec, min)
  }

  /**
   * `waiting`: this call waited for another build before it took the lock (see BuildClaims.acquire).
   * `firstLook`: the claim's first look, already sent for this token (see build()).
   */
  private async buildAndStore (key: string, spec: BuildSpec<V>, token: string, min: number | undefined, durableRead?: ReturnType<DurableTier<V>['get']>, waiting = false, firstLook?: Promise<ClaimOutcome | 'held'>): Promise<Resolution<V>> {
    const lock = lockKey(key)
    const announce = async (outcome: 'ready' | 'failed' | 'released'): Promise<void> => {
      await this.coordinator.releaseAndAnnounce(key, lock, token, this.buildLockTtlMs, outcome)
    }
    const claim = await this.claimBuild(key, spec, token, true, min, { durableRead, firstLook, waiting })
    if (claim.answer !== undefined) {
      await announce(claim.answer.status === 'fallback' ? 'released' : 'ready')
      return claim.answer
    }
    try {
      await this.admit(spec, true)
    } catch (err) {
      // Not this call's turn: free the key at once for the next one.
      this.releaseClaim(key, claim.owner)
      await announce('released')
      throw err
    }
    const version = this.clock()
    let built: { value: V, ms: number }
    try {
      built = await this.runBuild(spec, 'request', true)
    } catch (err) {
      this.deps.logger.warn({ key, err: describe(err) }, 'build failed; answering with the fallback')
      this.failClaim(key, claim.owner)
      // Sent right before the release, with no await between, on the same connection (the
      // lock's slot in a Cluster): it lands before the lock is free, at no extra round trip.
      await Promise.all([this.coordinator.markFailed(key), announce('failed')])
      return this.fallback(key, spec, err)
    }
    this.counters.misses++
    const writtenAt = this.clock()
    const entry = this.entryFor(built.value, writtenAt, writtenAt)
    // The caller has its value: the write, then the release and the
    // announcement (after the write, so waiters woken by it find the value),
    // go on off its path. The write starts once the answer is out (setImmediate
    // runs after the microtasks that send it). Calls for the key in this
    // process meanwhile are answered from the entry; other instances wait
    // for the lock. close() waits for all of it.
    this.landing.set(key, entry)
    const landed = new Promise<void>(resolve => { setImmediate(() => { resolve(this.land(key, entry, version, claim.owner)) }) })
      .finally(() => { if (this.landing.get(key) === entry) this.landing.delete(key) })
    this.background.track(landed.then(async () => { await announce('ready') }))
    return { status: 'miss', key, value: built.value, writtenAt, built: true, buildMs: built.ms }
  }

  /**
   * Writes a built entry to the durable tier (in the background) and to the
   * store, then to the in-process tier; the build's claim is released once the
   * durable row is there. Never rejects.
   */
  private async land (key: string, entry: Entry<V>, version: number, claimOwner?: string): Promise<void> {
    const encoded = this.tiers.encode(key, entry, version)
    if (encoded === undefined) {
      this.releaseClaim(key, claimOwner)
      return
    }
    this.afterDurableWrite(key, entry.value, this.deps.durable?.put(key, entry, version), claimOwner)
    try {
      await this.tiers.write(key, entry, encoded, version)
    } catch (err) {
      this.deps.logger.warn({ key, err: describe(err) }, 'could not store a built value')
    }
  }

  /**
   * The durable tier, asked before a build: a row there re-populates the
   * store and answers with no build. A stale row is answered and refreshed.
   * `read` is the tier's read, when it was already sent.
   */
  private async fromDurable (key: string, spec: BuildSpec<V>, repopulate: boolean, min: number | undefined, read = this.deps.durable?.get(key)): Promise<Resolution<V> | null> {
    const row = await read
    if (row === undefined || row === null || tooOld(row.entry, min)) return null
    if (repopulate) {
      const encoded = this.tiers.encode(key, row.entry, row.version)
      if (encoded !== undefined) {
        await this.tiers.put(key, encoded, row.version).catch(err => {
          this.deps.logger.warn({ key, err: describe(err) }, 'could not re-populate the store from the durable tier')
        })
      }
    }
    this.counters.durableHits++
    if (this.clock() >= row.entry.staleAfter) this.refresher.schedule(key, spec, row.entry)
    else if (repopulate) this.deps.local?.set(key, row.entry)
    return { status: 'durable', key, value: row.entry.value, writtenAt: row.entry.refreshedAt, built: false }
  }

  private async admit (spec: BuildSpec<V>, storeHealthy: boolean): Promise<void> {
    if (spec.admit === undefined) return
    try {
      await spec.admit({ storeHealthy })
    } catch (err) {
      throw new BuildRefusedError(err)
    }
  }

  /**
   * Waits for another builder. Wakes on its announcement, or polls with
   * backoff in case the announcement is lost; each poll also tries the lock,
   * so a builder that died is replaced once its lock expires. Past maxWaitMs
   * the call answers with the fallback rather than hang.
   */
  private async waitForBuilder (key: string, spec: BuildSpec<V>, min: number | undefined): Promise<Resolution<V>> {
    const o = this.deps.options
    const deadline = this.clock() + o.maxWaitMs
    let delay = o.pollMinMs
    try {
      spec.onWait?.()
    } catch (err) {
      this.deps.logger.warn({ key, err: describe(err) }, 'onWait failed')
    }
    while (!this.closing) {
      const left = deadline - this.clock()
      if (left <= 0) break
      const outcome = await this.coordinator.nextAnnouncement(key, Math.min(delay, left))
      if (outcome === 'failed') return this.fallback(key, spec, new Error('the build this call waited for failed'))
      if (outcome !== 'released') delay = Math.min(delay * 2, o.pollMaxMs)
      const entry = await this.tiers.read(key)
      if (entry === undefined) return await this.buildWithoutStore(key, spec, min, true)
      if (entry !== null && !tooOld(entry, min)) {
        // Someone else paid for it: this call waited for that build.
        return this.coalescedWith(key, spec, entry)
      }
      const token = randomUUID()
      const acquired = (await this.locks.tryLock(lockKey(key), token, this.buildLockTtlMs)) === true
      if (!acquired) continue
      // A poll can free-ride on the lock a failed builder just released, before
      // its 'failed' announcement arrives: the marker, written before that
      // release, answers as the announcement would have. And a builder can land
      // its value and release the lock between this poll's read and its lock:
      // the value is read again. Both after taking the lock (a read before it
      // would leave the same window open), together: one round trip.
      const [justFailed, landed] = await Promise.all([this.coordinator.buildJustFailed(key), this.tiers.read(key)])
      if (justFailed) {
        await this.locks.release(lockKey(key), token, this.buildLockTtlMs)
        return this.fallback(key, spec, new Error('the build this call waited for failed'))
      }
      if (landed !== undefined && landed !== null && !tooOld(landed, min)) {
        await this.locks.release(lockKey(key), token, this.buildLockTtlMs)
        return this.coalescedWith(key, spec, landed)
      }
      return await this.buildAndStore(key, spec, token, min, undefined, true)
    }
    this.deps.logger.warn({ key, waitedMs: o.maxWaitMs }, 'gave up waiting for another builder')
    return this.fallback(key, spec, new Error(`gave up waiting ${o.maxWaitMs} ms for another builder`))
  }

  /**
   * The store unusable: the durable tier if it answers, else build without
   * the store (still one build per key in this process). What was built is
   * kept in the durable tier: it is paid for.
   */
  private async buildWithoutStore (key: string, spec: BuildSpec<V>, min: number | undefined, waiting = false, sent?: { token: string, durableRead?: ReturnType<DurableTier<V>['get']>, firstLook?: Promise<ClaimOutcome | 'held'> }): Promise<Resolution<V>> {
    // What build() already sent beside its lock request (the claim's first look, or
    // the read without claims) is used. Otherwise the store could not even be read:
    // the row is read before the claim, as with the store down most keys asked for
    // are in the durable tier. Without the store, the durable claim is the only
    // thing between the instances.
    const claim = await this.claimBuild(key, spec, sent?.token ?? randomUUID(), false, min, { ...sent, waiting, readFirst: sent?.firstLook === undefined })
    if (claim.answer !== undefined) return claim.answer
    try {
      await this.admit(spec, false)
    } catch (err) {
      this.releaseClaim(key, claim.owner)
      throw err
    }
    try {
      const version = this.clock()
      const { value, ms } = await this.runBuild(spec, 'request', false)
      this.counters.fallbacks++
      const now = this.clock()
      const entry = this.entryFor(value, now, now)
      this.afterDurableWrite(key, value, this.deps.durable?.put(key, entry, version), claim.owner)
      return { status: 'fallback', key, value, writtenAt: now, built: true, buildMs: ms }
    } catch (err) {
      this.failClaim(key, claim.owner)
      this.deps.logger.warn({ key, err: describe(err) }, 'build failed without the store; answering with the fallback')
      return this.fallback(key, spec, err)
    }
  }

  // ---- Durable build claims: a build outlives a store that lost its lock. ----

  /**
   * Called by a builder before it builds: the durable tier and the build claim.
   * With claims, the claim's statement says whether the durable tier holds the
   * key, and the row is read only then: one database round trip before a build,
   * not a read and a claim side by side (`readFirst`: the row is read first all
   * the same). Without claims, the row is read. `answer` set: do not build,
   * answer with it (the row, another instance's build that landed meanwhile, or
   * the fallback after a wait in vain, as for a waiter on a lock). Otherwise
   * build; `owner` is the claim to release once the durable row is written.
   * `durableRead`, `firstLook`: what build() already sent with `token`.
   * `waiting`: this call already waited for another build (on its lock).
   */
  private async claimBuild (key: string, spec: BuildSpec<V>, token: string, repopulate: boolean, min: number | undefined,
    sent: { durableRead?: ReturnType<DurableTier<V>['get']>, firstLook?: Promise<ClaimOutcome | 'held'>, waiting?: boolean, readFirst?: boolean } = {}): Promise<{ answer?: Resolution<V>, owner?: string }> {
    const claims = this.deps.claims
    if (claims === undefined || sent.readFirst === true) {
      const answer = await this.fromDurable(key, spec, repopulate, min, sent.durableRead)
      if (answer !== null) return { answer }
      if (claims === undefined) return {}
    }
    const owner = this.claimOwner(token)
    const outcome = await claims.acquire(key, owner, this.deps.options.maxWaitMs, sent.waiting, sent.firstLook)
    if (outcome === 'won') return { owner }
    // The database cannot say: build, as before there were claims (the guarantee's limit).
    if (outcome === 'unavailable') return {}
    // The build this call waited for failed: answered as a waiter on a lock is,
    // never by a second model call (a new request still tries the model).
    if (outcome === 'failed') return { answer: this.fallback(key, spec, new Error('the build this call waited for failed')) }
    if (outcome === 'timeout') {
      this.deps.logger.warn({ key, waitedMs: this.deps.options.maxWaitMs }, 'gave up waiting for another instance\'s claimed build')
      return { answer: this.fallback(key, spec, new Error('gave up waiting for another instance\'s claimed build')) }
    }
    const answer = await this.fromDurable(key, spec, repopulate, min)
    // Built, but the row could not be read now: build (its write counts it as re-paid).
    return answer === null ? {} : { answer }
  }

  /**
   * Marks the claim of a build that failed (none when `owner` is undefined),
   * in the background: the calls waiting on it answer without building.
   */
  private failClaim (key: string, owner: string | undefined): void {
    if (owner === undefined || this.deps.claims === undefined) return
    this.background.track(this.deps.claims.fail(key, owner))
  }

  /** A call that waited for another's build answers with the entry that build landed. */
  private coalescedWith (key: string, spec: BuildSpec<V>, entry: Entry<V>): Resolution<V> {
    this.counters.coalesced++
    return { ...this.fromEntry(key, spec, entry, false), status: 'coalesced' }
  }

  /** Who a build claim belongs to: this instance and the build's lock token. */
  private claimOwner (token: string): string {
    return `${this.instanceId}/${token}`
  }

  /** Gives back, in the background, a claim asked for and no longer needed, once (and if) it is won. */
  private releaseIfWon (key: string, owner: string, asked: Promise<ClaimOutcome | 'held'> | undefined): void {
    if (asked !== undefined) this.background.track(asked.then(outcome => { if (outcome === 'won') this.releaseClaim(key, owner) }))
  }

  /** Frees a claim this build took (none when `owner` is undefined), in the background. */
  private releaseClaim (key: string, owner: string | undefined): void {
    if (owner === undefined || this.deps.claims === undefined) return
    this.background.track(this.deps.claims.release(key, owner))
  }

  /**
   * Once the durable write of a request's build has ended: counts the build
   * as re-paid when the row was already there, then releases the build's
   * claim (after the write, so whoever waits on the claim finds the row).
   */
  private afterDurableWrite (key: string, value: V, write: Promise<DurableWriteOutcome> | undefined, claimOwner: string | undefined): void {
    if (write === undefined) {
      this.releaseClaim(key, claimOwner)
      return
    }
    this.background.track(write.then(outcome => {
      if (outcome !== 'failed' && outcome.existed) {
        this.counters.repaidBuilds++
        this.deps.logger.warn({ key }, 'a value the durable tier already held was built (and paid for) again')
        try {
          this.deps.events?.repaid?.(key, value)
        } catch (err) {
          this.deps.logger.warn({ err: describe(err) }, 'repaid event handler failed')
        }
      }
      this.releaseClaim(key, claimOwner)
    }))
  }

  /** The adapter's stand-in: it needs nothing that can fail, and is never stored. Without one, the call fails. */
  private fallback (key: string, spec: BuildSpec<V>, cause: unknown): Resolution<V> {
    this.counters.fallbacks++
    if (spec.fallback === undefined) throw new BuildFailedError(`no value for ${key}: ${describe(cause)}`, { cause })
    return { status: 'fallback', key, value: spec.fallback(), writtenAt: this.clock(), built: false }
  }

  /** Runs a build: counted, timed (to 0.1 ms: Server-Timing subtracts it from the request's time). */
  private async runBuild (spec: BuildSpec<V>, reason: BuildReason, storeHealthy: boolean): Promise<{ value: V, ms: number }> {
    this.counters.builds++
    const started = performance.now()
    const value = await spec.build({ reason, signal: this.shutdown.signal, storeHealthy })
    return { value, ms: Math.round((performance.now() - started) * 10) / 10 }
  }

  private entryFor (value: V, createdAt: number, refreshedAt: number): Entry<V> {
    return { value, createdAt, refreshedAt, staleAfter: refreshedAt + this.deps.options.staleSeconds * 1000 }
  }

  /** Tells every instance (this one included) to forget what its in-process tier holds for a key, or for every key matching a glob. */
  async invalidate (target: { key: string } | { pattern: string }): Promise<void> {
    await this.coordinator.invalidate(target)
  }

  /**
   * Resolves once the background work started so far has ended: builds'
   * writes (durable and store) and lock releases, refreshes. For callers that
   * need what was answered to be stored (tests, tools); calls never wait on it.
   */
  async idle (): Promise<void> {
    await this.background.idle()
  }

  /**
   * Stops taking new background work, lets what is under way finish (up to
   * `graceMs`, then aborts the builds' signal), and releases every lock this
   * process holds.
   */
  async close (graceMs = 10_000): Promise<void> {
    this.closing = true
    this.coordinator.wakeAll()
    const settled = this.background.settled()
    const timer = setTimeout(() => this.shutdown.abort(), graceMs)
    await settled
    clearTimeout(timer)
    await this.locks.releaseAll()
    await this.deps.durable?.close()
    await this.coordinator.stop()
  }
}

/** True when the caller refuses entries written before `min`. */
function tooOld (entry: { refreshedAt: number }, min: number | undefined): boolean {
  return min !== undefined && entry.refreshedAt < min
}
