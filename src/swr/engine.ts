import { randomUUID } from 'node:crypto'
import type { Narrative } from '../domain/narrative.ts'
import type { NormalizedProfile } from '../domain/profile.ts'
import { failedBuildKey, lockKey, readyChannel, refreshLockKey } from '../domain/cache-key.ts'
import { ENGINE_VERSION, PROMPT_HASH } from '../domain/prompt.ts'
import { templateNarrative, TEMPLATE_ENGINE } from '../domain/template-narrator.ts'
import { NarratorError, type Generation, type Narrator } from '../narrator/narrator.ts'
import { withRetry, type RetryPolicy } from '../narrator/retry.ts'
import type { CircuitBreaker } from './breaker.ts'
import { CacheCorruptionError, decodeEntry, encodeEntry, type CachedNarrative } from '../narrative/codec.ts'
import type { Logger } from './logger.ts'
import type { CacheStore } from './store.ts'
import type { DurableTier, DurableWriteOutcome } from './durable-tier.ts'
import type { BuildClaims } from './build-claims.ts'
import { ProgressHub } from './progress-hub.ts'
import type { LocalTier } from './local-tier.ts'

export type EngineStatus = 'hit' | 'stale' | 'durable' | 'miss' | 'fallback'

export interface NarrativeJob {
  key: string
  profile: NormalizedProfile
  locale: string
  /**
   * Called just before each narrator call this request would make, retries
   * included; throwing refuses it (a rate limit): before the first call, the
   * request is refused; before a retry, the build fails and the template
   * answers. Waiting for someone else's build never calls it, nor does a
   * background refresh. `storeHealthy` is false on the direct path (the store just
   * failed), so a permit kept in the store can count elsewhere without waiting on it.
   */
  permit?: (context: { storeHealthy: boolean }) => Promise<void>
}

/** A permit refused: the caller's error is in `cause`. */
export class PermitDeniedError extends Error {
  override readonly name: string = 'PermitDeniedError'
  readonly reason: unknown

  constructor (reason: unknown) {
    super('generation not permitted')
    this.reason = reason
  }
}

export type GenerationReason = 'request' | 'refresh' | 'fallback'

export interface EngineEvents {
  /** Every narrator call that produced a narrative: what it cost and why. */
  generation?: (job: NarrativeJob, generation: Generation, durationMs: number, reason: GenerationReason) => void
  /** A value written to the store, with its encoded size. */
  stored?: (bytes: number) => void
  /**
   * A generation on the request path whose durable write found the narrative
   * already there: the model was paid again for something paid for before.
   */
  repaid?: (job: NarrativeJob) => void
}

export interface Resolution {
  status: EngineStatus
  key: string
  narrative: Narrative
  engine: string
  /** When the narrative was written (ms); age is measured from it. */
  writtenAt: number
  /** True when this call made the narrator write (a model call was paid for). */
  generated: boolean
  generation?: Generation
  /** How long the narrator took, when it wrote for this call. */
  generationMs?: number
}

export interface EngineOptions {
  prefix: string
  ttlSeconds: number
  staleSeconds: number
  /** Retry policy of a generation on the request path. */
  generation: RetryPolicy
  /** Retry policy of a background refresh (3 attempts by default). */
  refresh: RetryPolicy
  /** How long a request waits for another instance's build before it falls back. */
  maxWaitMs: number
  /** First and largest poll interval of a waiter: the safety net under pub/sub. */
  pollMinMs: number
  pollMaxMs: number
  /** Added to a lock's own deadline to make its TTL (default 5000): writes and releases after the build. */
  lockMarginMs?: number
}

export interface EngineDeps {
  store: CacheStore
  breaker: CircuitBreaker
  /** The configured narrator: a model, or the template when no key is set. */
  narrator: Narrator
  logger: Logger
  clock?: () => number
  options: EngineOptions
  /** PostgreSQL: read before the model is asked, written after it answered. */
  durable?: DurableTier
  /** The in-process first tier: fresh entries served with no Redis round trip. */
  local?: LocalTier
  /** Durable build claims (with the durable tier): a build outlives a Redis that lost its lock. */
  claims?: BuildClaims
  events?: EngineEvents
}

export interface EngineCounters {
  hits: number
  staleHits: number
  durableHits: number
  misses: number
  fallbacks: number
  generations: number
  refreshStarted: number
  refreshSkippedLocked: number
  refreshSucceeded: number
  refreshFailed: number
  corruptEntries: number
  storeErrors: number
  storeTimeouts: number
  /** Request-path generations of a key the durable tier already held (see EngineEvents.repaid). */
  repaidGenerations: number
}

/** What a builder announces: the value landed, the build failed, or it gave the lock back unbuilt. */
type Outcome = 'ready' | 'failed' | 'released'

interface Waiter { key: string, wake: (outcome: Outcome) => void }

/** Round trips of a poll that may be under way when a build fails; see markFailed. */
const FAILED_MARKER_SLACK_MS = 2000

/**
 * The cache engine: fresh and stale reads, one builder per key across every
 * instance (SET NX PX lock + pub/sub wake-ups + polling as the safety net),
 * newer-wins writes, background refresh under a refresh lock, and fallbacks
 * for every dependency. Plain class: store, breaker, narrators, clock and
 * logger are injected, so it runs the same inside or outside Fastify.
 */
export class NarrativeEngine {
  readonly counters: EngineCounters = {
    hits: 0, staleHits: 0, durableHits: 0, misses: 0, fallbacks: 0, generations: 0, refreshStarted: 0, refreshSkippedLocked: 0, refreshSucceeded: 0, refreshFailed: 0, corruptEntries: 0, storeErrors: 0, storeTimeouts: 0, repaidGenerations: 0
  }

  private readonly inflight = new Map<string, Promise<Resolution>>()
  /** Text written so far by builds in this process, for streaming requests. */
  readonly progress = new ProgressHub()
  private readonly refreshing = new Set<string>()
  private readonly background = new Set<Promise<void>>()
  /** Entries built here that have been answered with, on their way to the store. */
  private readonly landing = new Map<string, CachedNarrative>()
  private readonly heldLocks = new Map<string, string>()
  private readonly pendingReleases = new Map<string, { token: string, until: number }>()
  private releaseTimer: NodeJS.Timeout | undefined
  private readonly waiters = new Map<string, Set<Waiter>>()
  private unsubscribe: (() => Promise<void>) | undefined
  private readonly clock: () => number
  /** A request build's lock lives its generation deadline plus the margin, a refresh's its refresh deadline plus the margin. */
  private readonly buildLockTtlMs: number
  private readonly refreshLockTtlMs: number
  private closing = false
  private readonly shutdown = new AbortController()
  /** Tags this engine's announcements, so it does not evict its own fresh writes. */
  private readonly instanceId = randomUUID()

  private readonly deps: EngineDeps

  constructor (deps: EngineDeps) {
    this.deps = deps
    const o = deps.options
    if (!(o.staleSeconds > 0 && o.staleSeconds < o.ttlSeconds)) throw new Error('engine staleSeconds must be positive and below ttlSeconds')
    if (!(o.maxWaitMs > 0)) throw new Error('engine maxWaitMs must be positive')
    this.clock = deps.clock ?? Date.now
    // Each lock must outlive the build it protects, or a second builder starts;
    // and no longer: a holder that dies leaves its keys blocked for the whole TTL.
    const margin = o.lockMarginMs ?? 5000
    this.buildLockTtlMs = o.generation.deadlineMs + margin
    this.refreshLockTtlMs = o.refresh.deadlineMs + margin
  }

  /** Subscribes to build announcements. Without it waiters still poll. */
  async start (): Promise<void> {
    try {
      this.unsubscribe = await this.deps.store.subscribe(readyChannel(this.deps.options.prefix), message => this.onAnnouncement(message))
    } catch (err) {
      this.deps.logger.warn({ err }, 'could not subscribe to build announcements; waiters will poll')
    }
  }

  get locksHeld (): number {
    return this.heldLocks.size
  }

  /** A fresh entry of the in-process tier, counted as a hit; undefined when the answer needs anything more. */
  localHit (key: string): Resolution | undefined {
    const local = this.deps.local?.get(key)
    if (local === undefined || this.clock() >= local.meta.stale_after) return undefined
    this.counters.hits++
    return { status: 'hit', key, narrative: local.narrative, engine: local.engine, writtenAt: local.meta.refreshed_at, generated: false }
  }

  /**
   * Answers a request: concurrent identical calls in this process share one
   * promise before anything touches the store.
   */
  async resolve (job: NarrativeJob): Promise<Resolution> {
    const local = this.localHit(job.key)
    if (local !== undefined) return local
    // Just built here and on its way to the store: a hit from the entry in
    // hand, rather than a read of the store before the write lands (or, with
    // Redis slow, a wait on it).
    const landing = this.landing.get(job.key)
    if (landing !== undefined && this.clock() < landing.meta.stale_after) {
      this.counters.hits++
      return { status: 'hit', key: job.key, narrative: landing.narrative, engine: landing.engine, writtenAt: landing.meta.refreshed_at, generated: false }
    }
    const shared = this.inflight.get(job.key)
    if (shared !== undefined) {
      try {
        return { ...(await shared), generated: false, generationMs: undefined }
      } catch (err) {
        // The leader's own limit said no; this request has its own to try.
        if (err instanceof PermitDeniedError) return await this.resolve(job)
        throw err
      }
    }
    const promise = this.lookupOrBuild(job).finally(() => this.inflight.delete(job.key))
    this.inflight.set(job.key, promise)
    return await promise
  }

  private async lookupOrBuild (job: NarrativeJob): Promise<Resolution> {
    const entry = await this.readEntry(job.key)
    if (entry === undefined) return await this.direct(job)
    if (entry !== null) return this.fromEntry(job, entry, true)
    return await this.build(job)
  }

  /** The decoded entry in the store; null when there is none (or it was corrupt), undefined when the store failed. */
  private async readEntry (key: string): Promise<CachedNarrative | null | undefined> {
    let stored: Buffer | null
    try {
      stored = await this.store(s => s.get(key))
    } catch {
      return undefined
    }
    return stored === null ? null : this.decode(key, stored)
  }

  /**
   * Makes sure a key holds a fresh entry: skipped when it already does, built
   * (under the same lock as a request) when missing, refreshed now (under the
   * refresh lock) when stale. A template stand-in counts as failed: it is
   * never stored.
   */
  async warm (job: NarrativeJob): Promise<'warmed' | 'skipped' | 'failed'> {
    const entry = await this.readEntry(job.key)
    if (entry === undefined) return 'failed'
    if (entry !== null) {
      if (this.clock() < entry.meta.stale_after) return 'skipped'
      if (this.refreshing.has(job.key)) return 'skipped'
      this.refreshing.add(job.key)
      try {
        const outcome = await this.refresh(job, entry)
        return outcome === 'refreshed' ? 'warmed' : outcome === 'locked' ? 'skipped' : 'failed'
      } finally {
        this.refreshing.delete(job.key)
      }
    }
    const result = await this.resolve(job)
    if (result.status === 'fallback') return 'failed'
    // A durable row re-populated the store: warm now, and no model call was needed.
    return result.status === 'miss' || result.status === 'durable' ? 'warmed' : 'skipped'
  }

  /** A fresh or stale answer from a decoded entry; a stale one schedules its refresh. */
  private fromEntry (job: NarrativeJob, entry: CachedNarrative, countIt: boolean): Resolution {
    const stale = this.clock() >= entry.meta.stale_after
    if (!stale) this.deps.local?.set(job.key, entry)
    if (stale) {
      if (countIt) this.counters.staleHits++
      this.scheduleRefresh(job, entry)
    } else if (countIt) {
      this.counters.hits++
    }
    return {
      status: stale ? 'stale' : 'hit',
      key: job.key,
      narrative: entry.narrative,
      engine: entry.engine,
      writtenAt: entry.meta.refreshed_at,
      generated: false
    }
  }

  private decode (key: string, stored: Buffer): CachedNarrative | null {
    try {
      return decodeEntry(stored, ENGINE_VERSION)
    } catch (err) {
      if (!(err instanceof CacheCorruptionError)) throw err
      this.counters.corruptEntries++
      this.deps.local?.delete(key)
      this.deps.logger.warn({ key, reason: err.message }, 'corrupt cache entry deleted')
      this.store(s => s.del(key)).catch(() => {})
      return null
    }
  }

  /** A miss: become the one builder for this key, or wait for the one there is. */
  private async build (job: NarrativeJob): Promise<Resolution> {
    const token = randomUUID()
    // The builder's first step is the durable read: it goes out with the lock
    // request rather than after it (a round trip less before the model). Only
    // one request per key in this process gets here, the others share its
    // promise, so losing the lock wastes at most one read per instance.
    const durableRead = this.deps.durable?.get(job.key)
    const acquired = await this.tryLock(lockKey(job.key), token, this.buildLockTtlMs)
    if (acquired === undefined) return await this.direct(job)
    if (acquired) return await this.buildAndStore(job, token, durableRead)
    return await this.waitForBuilder(job)
  }

  private async buildAndStore (job: NarrativeJob, token: string, durableRead?: ReturnType<DurableTier['get']>): Promise<Resolution> {
    const lock = lockKey(job.key)
    this.heldLocks.set(lock, token)
    const fromDurable = await this.fromDurable(job, true, durableRead)
    if (fromDurable !== null) {
      await this.releaseAndAnnounce(job.key, lock, token, 'ready')
      return fromDurable
    }
    const claim = await this.claimBuild(job, token, true)
    if (claim.answer !== undefined) {
      await this.releaseAndAnnounce(job.key, lock, token, claim.answer.status === 'fallback' ? 'released' : 'ready')
      return claim.answer
    }
    try {
      await this.checkPermit(job, true)
    } catch (err) {
      // Not this request's turn: free the key at once for the next one.
      this.releaseClaim(job, claim.owner)
      await this.releaseAndAnnounce(job.key, lock, token, 'released')
      throw err
    }
    const version = this.clock()
    let generation: Generation
    let generationMs: number
    try {
      ({ generation, ms: generationMs } = await this.generate(job, this.deps.options.generation, 'request', true))
    } catch (err) {
      this.deps.logger.warn({ key: job.key, err: describe(err) }, 'narrator failed; answering with the template')
      this.releaseClaim(job, claim.owner)
      // Sent right before the release, with no await between, on the same connection (the
      // lock's slot in a Cluster): it lands before the lock is free, at no extra round trip.
      await Promise.all([this.markFailed(job.key), this.releaseAndAnnounce(job.key, lock, token, 'failed')])
      return this.templateFallback(job)
    }
    this.counters.misses++
    const writtenAt = this.clock()
    const entry = this.entryFor(job, generation, writtenAt, writtenAt)
    // The requester has its narrative: the write, then the release and the
    // announcement (after the write, so waiters woken by it find the value),
    // go on off its path. The write starts once the answer is out (setImmediate
    // runs after the microtasks that send it). Requests for the key in this
    // process meanwhile are answered from the entry; other instances wait
    // for the lock. close() waits for all of it.
    this.landing.set(job.key, entry)
    const landed = new Promise<void>(resolve => { setImmediate(() => { resolve(this.land(job, entry, version, claim.owner)) }) })
      .finally(() => { if (this.landing.get(job.key) === entry) this.landing.delete(job.key) })
    this.track(landed.then(async () => { await this.releaseAndAnnounce(job.key, lock, token, 'ready') }))
    return { status: 'miss', key: job.key, narrative: generation.narrative, engine: generation.engine, writtenAt, generated: true, generation, generationMs }
  }

  /**
   * Writes a built entry to the durable tier (in the background) and to the
   * store, then to the local tier; the build's claim is released once the
   * durable row is there. Never rejects.
   */
  private async land (job: NarrativeJob, entry: CachedNarrative, version: number, claimOwner?: string): Promise<void> {
    let encoded: Buffer
    try {
      encoded = encodeEntry(entry, version)
    } catch (err) {
      // Too large: the answer was still good, only uncached.
      this.deps.logger.warn({ key: job.key, reason: describe(err) }, 'narrative served but not cached')
      this.releaseClaim(job, claimOwner)
      return
    }
    this.afterDurableWrite(job, this.deps.durable?.put(job.key, entry, version, job.profile, job.locale), claimOwner)
    try {
      if (await this.store(s => s.setIfNewer(job.key, encoded, version, this.deps.options.ttlSeconds * 1000))) this.deps.local?.set(job.key, entry)
      this.deps.events?.stored?.(encoded.length)
    } catch (err) {
      this.deps.logger.warn({ key: job.key, err: describe(err) }, 'could not store a generated narrative')
    }
  }

  /**
   * The durable tier, asked before the model: a row there re-populates the
   * store and answers with no model call. A stale row is answered and
   * refreshed. `read` is the tier's read, when it was already sent.
   */
  private async fromDurable (job: NarrativeJob, repopulate = true, read = this.deps.durable?.get(job.key)): Promise<Resolution | null> {
    const row = await read
    if (row === undefined || row === null || row.entry.version !== ENGINE_VERSION) return null
    if (repopulate) {
      try {
        const encoded = encodeEntry(row.entry, row.version)
        await this.store(s => s.setIfNewer(job.key, encoded, row.version, this.deps.options.ttlSeconds * 1000))
      } catch (err) {
        this.deps.logger.warn({ key: job.key, err: describe(err) }, 'could not re-populate the store from the durable tier')
      }
    }
    this.counters.durableHits++
    if (this.clock() >= row.entry.meta.stale_after) this.scheduleRefresh(job, row.entry)
    else if (repopulate) this.deps.local?.set(job.key, row.entry)
    return { status: 'durable', key: job.key, narrative: row.entry.narrative, engine: row.entry.engine, writtenAt: row.entry.meta.refreshed_at, generated: false }
  }

  private async checkPermit (job: NarrativeJob, storeHealthy: boolean): Promise<void> {
    if (job.permit === undefined) return
    try {
      await job.permit({ storeHealthy })
    } catch (err) {
      throw new PermitDeniedError(err)
    }
  }

  /** A retry refused ends the attempts: a NarratorError that is not retryable. */
  private async permitRetry (job: NarrativeJob, storeHealthy: boolean): Promise<void> {
    try {
      await this.checkPermit(job, storeHealthy)
    } catch (err) {
      throw new NarratorError(`a retry was not permitted (${describe(err instanceof PermitDeniedError ? err.reason : err)})`, false)
    }
  }

  /**
   * Tells every instance (this one included) to forget what it holds in its
   * local tier for a key, or for every key matching a glob.
   */
  async invalidate (target: { key: string } | { pattern: string }): Promise<void> {
    if ('key' in target) this.deps.local?.delete(target.key)
    else this.deps.local?.deleteMatching(target.pattern)
    const message = 'key' in target ? { k: target.key, o: 'invalidate', i: this.instanceId } : { p: target.pattern, o: 'invalidate', i: this.instanceId }
    await this.store(s => s.publish(readyChannel(this.deps.options.prefix), JSON.stringify(message))).catch(() => {})
  }

  /**
   * SET NX PX; undefined when the store failed. A command that timed out may
   * still run later (a frozen or paused Redis): the compare-and-delete is sent
   * right behind it on the same connection, so a late SET leaves no lock that
   * nobody holds.
   */
  private async tryLock (lock: string, token: string, ttlMs: number): Promise<boolean | undefined> {
    try {
      return await this.store(s => s.acquireLock(lock, token, ttlMs))
    } catch {
      this.release(lock, token, ttlMs).catch(() => {})
      return undefined
    }
  }

  /**
   * Frees a lock this process took. When Redis does not answer, the release is
   * retried in the background until the lock would have expired anyway, so a
   * lost connection does not leave the key blocked for the lock's whole TTL
   * (`ttlMs`, the TTL this lock was taken with).
   */
  private async release (lock: string, token: string, ttlMs: number): Promise<void> {
    this.heldLocks.delete(lock)
    try {
      await this.deps.store.releaseLock(lock, token)
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
        else this.deps.store.releaseLock(lock, token).then(() => { this.pendingReleases.delete(lock) }, () => {})
      }
      this.scheduleReleaseRetry()
    }, 500)
    this.releaseTimer.unref()
  }

  /** Frees a request build's lock (`lock`, of `key`) and says how the build ended. */
  private async releaseAndAnnounce (key: string, lock: string, token: string, outcome: Outcome): Promise<void> {
    // Sent back to back (one connection keeps their order), awaited together: a
    // frozen Redis costs one command timeout here, not two.
    await Promise.all([
      this.release(lock, token, this.buildLockTtlMs),
      this.store(s => s.publish(readyChannel(this.deps.options.prefix), JSON.stringify({ k: key, o: outcome, i: this.instanceId }))).catch(() => {})
    ])
  }

  /**
   * Waits for another builder. Wakes on its announcement, or polls with
   * backoff in case the announcement is lost; each poll also tries the lock,
   * so a builder that died is replaced once its lock expires. Past maxWaitMs
   * the request answers from the template rather than hang.
   */
  private async waitForBuilder (job: NarrativeJob): Promise<Resolution> {
    const deadline = this.clock() + this.deps.options.maxWaitMs
    let delay = this.deps.options.pollMinMs
    while (!this.closing) {
      const left = deadline - this.clock()
      if (left <= 0) break
      const outcome = await this.nextAnnouncement(job.key, Math.min(delay, left))
      if (outcome === 'failed') return this.templateFallback(job)
      if (outcome !== 'released') delay = Math.min(delay * 2, this.deps.options.pollMaxMs)
      const entry = await this.readEntry(job.key)
      if (entry === undefined) return await this.direct(job)
      // Someone else paid for it: this request is answered as a miss it did not cause.
      if (entry !== null) return { ...this.fromEntry(job, entry, false), status: 'miss' }
      const token = randomUUID()
      const acquired = (await this.tryLock(lockKey(job.key), token, this.buildLockTtlMs)) === true
      if (!acquired) continue
      // A poll can free-ride on the lock a failed builder just released, before
      // its 'failed' announcement arrives: the marker, written before that
      // release, answers as the announcement would have. Read after taking the
      // lock, as a read before it would leave the same window open.
      if (await this.buildJustFailed(job.key)) {
        await this.release(lockKey(job.key), token, this.buildLockTtlMs)
        return this.templateFallback(job)
      }
      return await this.buildAndStore(job, token)
    }
    this.deps.logger.warn({ key: job.key, waitedMs: this.deps.options.maxWaitMs }, 'gave up waiting for another builder')
    return this.templateFallback(job)
  }

  /**
   * Lives one longest poll interval, so it covers every waiter whose poll is
   * already scheduled even if the announcement never comes, plus time for that
   * poll's own round trips (entry, lock, marker). It is not a negative cache: a
   * fresh request arriving later still asks the model.
   */
  private async markFailed (key: string): Promise<void> {
    const ttlMs = this.deps.options.pollMaxMs + FAILED_MARKER_SLACK_MS
    await this.store(s => s.set(failedBuildKey(key), '1', ttlMs)).catch(() => {})
  }

  /** False when the store cannot tell: the waiter then builds, as it did before there was a marker. */
  private async buildJustFailed (key: string): Promise<boolean> {
    try {
      return (await this.store(s => s.get(failedBuildKey(key)))) !== null
    } catch {
      return false
    }
  }

  private async nextAnnouncement (key: string, timeoutMs: number): Promise<Outcome | 'timeout'> {
    return await new Promise(resolve => {
      let set = this.waiters.get(key)
      if (set === undefined) {
        set = new Set()
        this.waiters.set(key, set)
      }
      const entries = set
      const timer = setTimeout(() => finish('timeout'), timeoutMs)
      const waiter: Waiter = { key, wake: outcome => finish(outcome) }
      function finish (outcome: Outcome | 'timeout'): void {
        clearTimeout(timer)
        entries.delete(waiter)
        resolve(outcome)
      }
      entries.add(waiter)
      if (this.closing) finish('timeout')
    })
  }

  private onAnnouncement (message: string): void {
    let parsed: { k?: unknown, o?: unknown, p?: unknown, i?: unknown }
    try { parsed = JSON.parse(message) } catch { return }
    const mine = parsed.i === this.instanceId
    if (parsed.o === 'invalidate' && mine) return
    if (parsed.o === 'invalidate' && typeof parsed.p === 'string') {
      this.deps.local?.deleteMatching(parsed.p)
      return
    }
    if (typeof parsed.k !== 'string') return
    // A key was written (or deleted) somewhere: what this process remembers of it may be old.
    if ((parsed.o === 'ready' && !mine) || parsed.o === 'invalidate') this.deps.local?.delete(parsed.k)
    if (parsed.o === 'invalidate') return
    const set = this.waiters.get(parsed.k)
    if (set === undefined) return
    this.waiters.delete(parsed.k)
    const outcome: Outcome = parsed.o === 'failed' || parsed.o === 'released' ? parsed.o : 'ready'
    for (const waiter of set) waiter.wake(outcome)
  }

  /**
   * Redis unusable: the durable tier if it answers, else generate without the
   * cache (still one call per key in this process). What the model wrote is
   * kept in the durable tier: it is paid for.
   */
  private async direct (job: NarrativeJob): Promise<Resolution> {
    const fromDurable = await this.fromDurable(job, false)
    if (fromDurable !== null) return fromDurable
    // Without Redis, the durable claim is the only thing between the instances.
    const claim = await this.claimBuild(job, randomUUID(), false)
    if (claim.answer !== undefined) return claim.answer
    try {
      await this.checkPermit(job, false)
    } catch (err) {
      this.releaseClaim(job, claim.owner)
      throw err
    }
    try {
      const version = this.clock()
      const { generation, ms } = await this.generate(job, this.deps.options.generation, 'request', false)
      this.counters.fallbacks++
      const now = this.clock()
      this.afterDurableWrite(job, this.deps.durable?.put(job.key, this.entryFor(job, generation, now, now), version, job.profile, job.locale), claim.owner)
      return { status: 'fallback', key: job.key, narrative: generation.narrative, engine: generation.engine, writtenAt: now, generated: true, generation, generationMs: ms }
    } catch (err) {
      this.releaseClaim(job, claim.owner)
      this.deps.logger.warn({ key: job.key, err: describe(err) }, 'narrator failed without the cache; answering with the template')
      return this.templateFallback(job)
    }
  }

  // ---- Durable build claims (issue 17): a build outlives a Redis that lost its lock. ----

  /**
   * Called by a builder once the durable tier had nothing for the key and
   * before the model is asked. `answer` set: do not build, answer with it
   * (another instance's build landed meanwhile, or it was waited for in vain
   * and the template stands in, as for a waiter on a Redis lock). Otherwise
   * build; `owner` is the claim to release once the durable row is written.
   */
  private async claimBuild (job: NarrativeJob, token: string, repopulate: boolean): Promise<{ answer?: Resolution, owner?: string }> {
    const claims = this.deps.claims
    if (claims === undefined) return {}
    const owner = `${this.instanceId}/${token}`
    const outcome = await claims.acquire(job.key, owner, this.deps.options.maxWaitMs)
    if (outcome === 'won') return { owner }
    // The database cannot say: build, as before there were claims (the guarantee's limit).
    if (outcome === 'unavailable') return {}
    if (outcome === 'timeout') {
      this.deps.logger.warn({ key: job.key, waitedMs: this.deps.options.maxWaitMs }, 'gave up waiting for another instance\'s claimed build')
      return { answer: this.templateFallback(job) }
    }
    const answer = await this.fromDurable(job, repopulate)
    // Built, but the row could not be read now: build (its write counts it as re-paid).
    return answer === null ? {} : { answer }
  }

  /** Frees a claim this build took (none when `owner` is undefined), in the background. */
  private releaseClaim (job: NarrativeJob, owner: string | undefined): void {
    if (owner === undefined || this.deps.claims === undefined) return
    this.track(this.deps.claims.release(job.key, owner))
  }

  /**
   * Once the durable write of a request's generation has ended: counts the
   * generation as re-paid when the row was already there, then releases the
   * build's claim (after the write, so whoever waits on the claim finds the row).
   */
  private afterDurableWrite (job: NarrativeJob, write: Promise<DurableWriteOutcome> | undefined, claimOwner: string | undefined): void {
    if (write === undefined) {
      this.releaseClaim(job, claimOwner)
      return
    }
    this.track(write.then(outcome => {
      if (outcome !== 'failed' && outcome.existed) {
        this.counters.repaidGenerations++
        this.deps.logger.warn({ key: job.key }, 'the model was paid for a narrative the durable tier already held')
        try {
          this.deps.events?.repaid?.(job)
        } catch (err) {
          this.deps.logger.warn({ err: describe(err) }, 'repaid event handler failed')
        }
      }
      this.releaseClaim(job, claimOwner)
    }))
  }

  /** The template stands in: it needs nothing that can fail, and is never stored. */
  private templateFallback (job: NarrativeJob): Resolution {
    this.counters.fallbacks++
    return { status: 'fallback', key: job.key, narrative: templateNarrative(job.profile), engine: TEMPLATE_ENGINE, writtenAt: this.clock(), generated: false }
  }

  /** `storeHealthy` is passed to the permit of a request's retries (see NarrativeJob.permit). */
  private async generate (job: NarrativeJob, policy: RetryPolicy, reason: GenerationReason, storeHealthy = true): Promise<{ generation: Generation, ms: number }> {
    this.counters.generations++
    const started = performance.now()
    // Requests' builds share their text as it is written; refreshes answer no one live.
    const share = reason === 'request'
    if (share) this.progress.begin(job.key)
    let calls = 0
    let generation: Generation
    try {
      generation = await withRetry(async signal => {
        // Every call a request makes is permitted, retries included (the first before the build began).
        if (calls++ > 0 && reason === 'request') await this.permitRetry(job, storeHealthy)
        return await this.deps.narrator.generate(job.profile, job.locale, signal, share ? text => this.progress.update(job.key, text) : undefined)
      }, policy, this.shutdown.signal)
    } finally {
      if (share) this.progress.end(job.key)
    }
    // To 0.1 ms: Server-Timing subtracts it from the request's time.
    const ms = Math.round((performance.now() - started) * 10) / 10
    try {
      this.deps.events?.generation?.(job, generation, ms, reason)
    } catch (err) {
      this.deps.logger.warn({ err: describe(err) }, 'generation event handler failed')
    }
    return { generation, ms }
  }

  private entryFor (job: NarrativeJob, generation: Generation, createdAt: number, refreshedAt: number): CachedNarrative {
    const o = this.deps.options
    return {
      version: ENGINE_VERSION,
      engine: generation.engine,
      prompt_hash: PROMPT_HASH,
      profile: job.profile,
      narrative: generation.narrative,
      meta: {
        created_at: createdAt,
        refreshed_at: refreshedAt,
        stale_after: refreshedAt + o.staleSeconds * 1000,
        ttl_seconds: o.ttlSeconds,
        size_bytes: 0,
        compression: 'none'
      }
    }
  }

  /**
   * Stale-while-revalidate: one refresh per key in this process, and one
   * across all instances thanks to the refresh lock. A failed refresh leaves
   * the stale entry in place.
   */
  private scheduleRefresh (job: NarrativeJob, entry: CachedNarrative): void {
    if (this.closing || this.refreshing.has(job.key)) return
    this.refreshing.add(job.key)
    this.track(this.refresh(job, entry)
      .then(() => {}, err => this.deps.logger.error({ key: job.key, err: describe(err) }, 'refresh crashed'))
      .finally(() => { this.refreshing.delete(job.key) }))
  }

  /** Work that outlives the request that started it: close() waits for it. */
  private track (work: Promise<void>): void {
    const task: Promise<void> = work
      .catch(err => { this.deps.logger.error({ err: describe(err) }, 'background work failed') })
      .finally(() => { this.background.delete(task) })
    this.background.add(task)
  }

  private async refresh (job: NarrativeJob, entry: CachedNarrative): Promise<'refreshed' | 'locked' | 'failed'> {
    const lock = refreshLockKey(job.key)
    const token = randomUUID()
    const acquired = (await this.tryLock(lock, token, this.refreshLockTtlMs)) === true
    if (!acquired) {
      this.counters.refreshSkippedLocked++
      return 'locked'
    }
    this.heldLocks.set(lock, token)
    this.counters.refreshStarted++
    const version = this.clock()
    try {
      const { generation } = await this.generate(job, this.deps.options.refresh, 'refresh')
      const now = this.clock()
      const refreshed = this.entryFor(job, generation, entry.meta.created_at, now)
      const encoded = encodeEntry(refreshed, version)
      this.deps.durable?.put(job.key, refreshed, version, job.profile, job.locale)
      await this.store(s => s.setIfNewer(job.key, encoded, version, this.deps.options.ttlSeconds * 1000))
      this.counters.refreshSucceeded++
      await this.invalidate({ key: job.key })
      return 'refreshed'
    } catch (err) {
      this.counters.refreshFailed++
      this.deps.logger.warn({ key: job.key, err: describe(err) }, 'refresh failed; the stale entry stays')
      return 'failed'
    } finally {
      await this.release(lock, token, this.refreshLockTtlMs)
    }
  }

  /** A store call through the breaker; its failures are counted, never thrown past the engine. */
  private async store<T> (op: (store: CacheStore) => Promise<T>): Promise<T> {
    try {
      return await this.deps.breaker.run(() => op(this.deps.store))
    } catch (err) {
      this.counters.storeErrors++
      if (/timed out/i.test((err as Error).message)) this.counters.storeTimeouts++
      throw err
    }
  }

  /**
   * Resolves once the background work started so far has ended: builds'
   * writes (durable and store) and lock releases, refreshes. For callers that
   * need what was answered to be stored (tests, tools); requests never wait on it.
   */
  async idle (): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background])
  }

  /**
   * Stops taking new background work, lets refreshes in flight finish (up to
   * `graceMs`, then aborts them), and releases every lock this process holds.
   */
  async close (graceMs = 10_000): Promise<void> {
    this.closing = true
    for (const set of this.waiters.values()) for (const w of set) w.wake('ready')
    const settled = Promise.allSettled([...this.background])
    const timer = setTimeout(() => this.shutdown.abort(), graceMs)
    await settled
    clearTimeout(timer)
    clearTimeout(this.releaseTimer)
    const owed = [...this.heldLocks, ...[...this.pendingReleases].map(([lock, p]) => [lock, p.token] as const)]
    await Promise.all(owed.map(async ([lock, token]) => { await this.deps.store.releaseLock(lock, token).catch(() => {}) }))
    this.heldLocks.clear()
    this.pendingReleases.clear()
    await this.deps.durable?.close()
    await this.unsubscribe?.().catch(() => {})
  }
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
