import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { SwrEngine } from '../swr/engine.ts'
import type { Logger } from '../swr/logger.ts'
import type { Resolution } from '../swr/types.ts'
import type { TokenBucket } from '../rollout/token-bucket.ts'
import type { NarrativeBuilds, NarrativeJob } from './adapter.ts'
import type { NarrativeValue } from './codec.ts'
import { writerName, type EarlierWriter, type PromptSelection, type Writer } from './versions.ts'

/** Fleet-wide flags and claims of the rollout: the cache store (Redis, or this process's memory). */
export interface RolloutStore {
  /** One instance writes a key in the background at a time: the others drop it from their queue. */
  claim: (key: string, token: string, ttlMs: number) => Promise<boolean>
  unclaim: (key: string, token: string) => Promise<void>
  paused: () => Promise<boolean>
  setPaused: (paused: boolean) => Promise<void>
  /** Marks a writer (a prompt version and a model) as one that writes entries in this namespace (for as long as its entries live). */
  markWriting: (writer: Writer) => Promise<void>
  /** The writers that have written entries here (within their lifetime), the most recently marked first. */
  writers: () => Promise<Writer[]>
}

/** A most-requested key (analytics), as today's job. */
export interface HotJob { job: NarrativeJob, count: number }

export interface RolloutDeps {
  engine: SwrEngine<NarrativeValue>
  builds: NarrativeBuilds
  selection: PromptSelection
  /** ROLLOUT_RATE: every background write takes a token (each model call, retries included). */
  bucket: TokenBucket
  store: RolloutStore
  /** The most requested keys, most first, as today's jobs: the queue's seed and the status's sample. */
  hotJobs?: (limit: number) => Promise<HotJob[]>
  logger: Logger
  options?: Partial<RolloutOptions>
}

export interface RolloutOptions {
  /** Background writes under way at once in this process. */
  concurrency: number
  /** How often the queue is seeded again from analytics. */
  seedIntervalMs: number
  /** How many of the most requested keys are seeded and reported on. */
  hotKeys: number
  /** How long a key's background write is claimed for (longer than a build). */
  claimTtlMs: number
  /** How often the fleet-wide pause flag is read again. */
  pauseCheckMs: number
  /** The longest a request spends looking for an earlier writer's entry before it takes the usual path. */
  peekBudgetMs: number
  /** ROLLOUT, as reported: with `immediate` the service does not use the rollout and its workers are not started. */
  mode: 'gradual' | 'immediate'
}

const DEFAULTS: RolloutOptions = { peekBudgetMs: 300, mode: 'gradual', concurrency: 4, seedIntervalMs: 30_000, hotKeys: 1000, claimTtlMs: 60_000, pauseCheckMs: 1000 }

export interface RolloutCounters {
  /** Requests answered from an earlier writer's entry (another prompt version or model). */
  earlierAnswers: number
  /** Background writes that made an entry of today's version. */
  written: number
  /** Keys dropped from the queue: already written, or claimed by another instance. */
  skipped: number
  failed: number
  /** Times a write waited for a token. */
  throttled: number
}

export interface RolloutStatus {
  mode: 'gradual' | 'immediate'
  active: string
  /** The model that writes today. */
  model: string
  canary: { version: string, percent: number } | null
  previous: string[]
  /** The other models that have written entries here: their entries answer too, while today's model writes. */
  previousModels: string[]
  paused: boolean
  ratePerMinute: number
  /** Of the most requested keys: how many are answered by each version, by each model, and by none. */
  hotKeys: { sampled: number, onVersion: Record<string, number>, onModel: Record<string, number>, none: number }
  /** Hot keys still answered by an earlier writer (another version or model than theirs): the rollout's work left. */
  remaining: number
  expectedSecondsToFinish: number
  done: boolean
  /** This process's queue and counters. */
  queued: number
  counters: RolloutCounters
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms).unref())

/**
 * A gradual rollout of a new prompt version or model (ROLLOUT=gradual). A
 * request for a key today's writer (version and model) has not written yet,
 * whose request an earlier writer has answered, is answered at once from that
 * entry (stale, naming the version and model that wrote it), and the key is
 * queued. Workers write the queue in
 * the background, most requested first, under a fleet-wide token bucket
 * (ROLLOUT_RATE model calls a minute across every instance), each key
 * claimed by one instance and built through the engine (one build per key
 * across the fleet, as always). The queue is also seeded from analytics, so
 * the hot keys move even before they are asked for.
 */
export class Rollout {
  readonly counters: RolloutCounters = { earlierAnswers: 0, written: 0, skipped: 0, failed: 0, throttled: 0 }
  private readonly queue = new Map<string, { job: NarrativeJob, weight: number }>()
  private readonly options: RolloutOptions
  private readonly deps: RolloutDeps
  private closed = false
  private pausedCache: { value: boolean, at: number } | undefined
  private readonly waiters = new Set<() => void>()
  private workers: Array<Promise<void>> = []
  private seeder: NodeJS.Timeout | undefined
  /** This process's part of every claim token. */
  private readonly claimPrefix = randomUUID()
  /** The workers' turn at the bucket: one asks at a time (token()). */
  private tokenTurn: Promise<boolean> = Promise.resolve(true)
  /**
   * The other writers (versions, models) that have written entries here:
   * only their keys are looked at. None (a namespace only today's writer ever
   * wrote): requests take the usual path with no extra read, exactly as with
   * ROLLOUT=immediate.
   */
  private earlier: Writer[] = []
  private readonly marked = new Map<string, number>()
  /** Keys just seen holding an entry of their own writer: their requests skip the look for an earlier one. */
  private readonly present = new LRUCache<string, true>({ max: 50_000, ttl: 60_000 })

  constructor (deps: RolloutDeps) {
    this.deps = deps
    this.options = { ...DEFAULTS, ...deps.options }
  }

  /** Marks a writer as one that has written an entry here (once per process, again after a day; again on the next write if marking failed). */
  noteWritten (writer: Writer): void {
    const name = writerName(writer)
    const at = this.marked.get(name)
    if (at !== undefined && Date.now() - at < 86_400_000) return
    this.marked.set(name, Date.now())
    this.deps.store.markWriting(writer).catch(() => { this.marked.delete(name) })
  }

  /** Reads which other writers have written here (again at every seeding). */
  async refreshWriters (): Promise<void> {
    const { selection, store } = this.deps
    this.earlier = (await store.writers()).filter(w => !selection.isCurrent(w, selection.active))
  }

  /**
   * Where a job's request may have an earlier answer, in the order to look:
   * the writers known to have written (for requests), or those and every
   * other prompt version with today's model (for the status and the seeding,
   * which also count entries written before writers were marked).
   */
  private earlierFor (job: NarrativeJob, everyVersion: boolean): EarlierWriter[] {
    const { selection } = this.deps
    const own = job.prompt ?? selection.active
    const written = everyVersion ? [...this.earlier, ...selection.others(own).map(p => ({ version: p.version, model: selection.model }))] : this.earlier
    return selection.earlierWriters(own, written)
  }

  start (): void {
    for (let i = 0; i < this.options.concurrency; i++) this.workers.push(this.work())
    const seed = (): void => { this.refreshWriters().then(async () => await this.seed()).catch(err => this.deps.logger.warn({ err: (err as Error).message }, 'rollout: seeding from analytics failed')) }
    setImmediate(seed)
    this.seeder = setInterval(seed, this.options.seedIntervalMs).unref()
  }

  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.seeder)
    this.wakeAll()
    await Promise.all(this.workers)
  }

  /**
   * The answer from an earlier writer's entry, when today's writer has no
   * entry for the job's key and an earlier one has (the key is then queued);
   * undefined when the request should take the usual path.
   */
  async earlierAnswer (job: NarrativeJob): Promise<Resolution<NarrativeValue> | undefined> {
    if (this.earlier.length === 0 && this.deps.selection.canary === undefined) return undefined
    // A store that is slow to say (frozen, failing) must not make a request wait twice (here, then on the usual
    // path): past this budget the request takes the usual path, as without a rollout. The budget is the store's,
    // not this process's: a timer that fires late by half the budget or more means the process itself was too
    // busy to run it (and perhaps to read the store's answer, already there), and the budget starts again. Given
    // up on a stall, the request would go on to wait for the model, the one thing the rollout is there to spare
    // it. A store that never answers is bounded by its own command timeout, after which the look gives up.
    const budgetMs = this.options.peekBudgetMs
    let timer: NodeJS.Timeout | undefined
    const budget = new Promise<undefined>(resolve => {
      const arm = (): void => {
        const due = performance.now() + budgetMs
        timer = setTimeout(() => {
          if (performance.now() - due >= budgetMs / 2) arm()
          else resolve(undefined)
        }, budgetMs)
      }
      arm()
    })
    try {
      return await Promise.race([this.findEarlier(job), budget])
    } finally {
      clearTimeout(timer)
    }
  }

  private async findEarlier (job: NarrativeJob): Promise<Resolution<NarrativeValue> | undefined> {
    const { engine, selection } = this.deps
    const candidates = this.earlierFor(job, false)
    if (candidates.length === 0 || this.present.has(job.key)) return undefined
    // The key's own entry and each earlier writer's, looked up together: one round trip
    // before a miss's usual path rather than one per writer (a key found present is not
    // looked up again, so the earlier writers' reads are spent once per key and process).
    const keys = candidates.map(other => selection.keyFor(job.profile, job.locale, other.prompt, other.model))
    const [current, ...earlier] = await Promise.all([job.key, ...keys].map(async key => await engine.peek(key)))
    // Present, or the store cannot say: the usual path (a hit, or the way it handles a store that fails).
    if (current !== null) {
      if (current !== undefined) this.present.set(job.key, true)
      return undefined
    }
    // The first writer in the selection's order that has an entry answers.
    for (const [i, entry] of earlier.entries()) {
      if (entry === undefined) return undefined
      if (entry === null) continue
      this.counters.earlierAnswers++
      this.enqueue(job, 1)
      return { status: 'stale', key: keys[i], value: entry.value, writtenAt: entry.refreshedAt, built: false }
    }
    return undefined
  }

  /** Queues a key for its background write (its weight adds up: most requested first). */
  enqueue (job: NarrativeJob, weight: number): void {
    const queued = this.queue.get(job.key)
    if (queued !== undefined) queued.weight += weight
    else this.queue.set(job.key, { job: { key: job.key, profile: job.profile, locale: job.locale, prompt: job.prompt }, weight })
    this.wakeAll()
  }

  get queued (): number {
    return this.queue.size
  }

  async pause (): Promise<void> {
    await this.deps.store.setPaused(true)
    this.pausedCache = { value: true, at: Date.now() }
  }

  async resume (): Promise<void> {
    await this.deps.store.setPaused(false)
    this.pausedCache = { value: false, at: Date.now() }
    this.wakeAll()
  }

  async paused (): Promise<boolean> {
    const cached = this.pausedCache
    if (cached !== undefined && Date.now() - cached.at < this.options.pauseCheckMs) return cached.value
    const value = await this.deps.store.paused().catch(() => cached?.value ?? false)
    this.pausedCache = { value, at: Date.now() }
    return value
  }

  /** Queues the most requested keys that an earlier writer answers and today's has not written. */
  async seed (): Promise<number> {
    if (this.deps.hotJobs === undefined || this.closed) return 0
    let seeded = 0
    for (const { job, count } of await this.deps.hotJobs(this.options.hotKeys)) {
      if (this.closed) break
      const where = await this.answeredBy(job)
      if (where !== undefined && where !== 'none' && !this.deps.selection.isCurrent(where, job.prompt ?? this.deps.selection.active)) {
        this.enqueue(job, count)
        seeded++
      }
    }
    return seeded
  }

  /** Which writer's entry answers a job now: its own, an earlier one, none; undefined when the store cannot say. */
  private async answeredBy (job: NarrativeJob): Promise<Writer | 'none' | undefined> {
    const { engine, selection } = this.deps
    const own = job.prompt ?? selection.active
    const entry = await engine.peek(job.key)
    if (entry === undefined) return undefined
    if (entry !== null) return { version: own.version, model: selection.model }
    for (const other of this.earlierFor(job, true)) {
      const found = await engine.peek(selection.keyFor(job.profile, job.locale, other.prompt, other.model))
      if (found === undefined) return undefined
      if (found !== null) return { version: other.prompt.version, model: other.model }
    }
    return 'none'
  }

  async status (): Promise<RolloutStatus> {
    const { selection, bucket } = this.deps
    const hot = this.deps.hotJobs === undefined ? [] : await this.deps.hotJobs(this.options.hotKeys)
    const onVersion: Record<string, number> = Object.fromEntries(selection.known.map(p => [p.version, 0]))
    const previousModels = [...new Set(this.earlier.map(w => w.model).filter(m => m !== selection.model))]
    const onModel: Record<string, number> = Object.fromEntries([selection.model, ...previousModels].map(m => [m, 0]))
    let none = 0
    let remaining = 0
    const BATCH = 50
    for (let i = 0; i < hot.length; i += BATCH) {
      const found = await Promise.all(hot.slice(i, i + BATCH).map(async ({ job }) => ({ job, where: await this.answeredBy(job) })))
      for (const { job, where } of found) {
        if (where === undefined || where === 'none') {
          none++
          continue
        }
        onVersion[where.version] = (onVersion[where.version] ?? 0) + 1
        onModel[where.model] = (onModel[where.model] ?? 0) + 1
        if (!selection.isCurrent(where, job.prompt ?? selection.active)) remaining++
      }
    }
    const canary = selection.canary
    return {
      mode: this.options.mode,
      active: selection.active.version,
      model: selection.model,
      canary: canary === undefined ? null : { version: canary.prompt.version, percent: canary.percent },
      previous: selection.others(selection.active).map(p => p.version),
      previousModels,
      paused: await this.paused(),
      ratePerMinute: bucket.perMinute,
      hotKeys: { sampled: hot.length, onVersion, onModel, none },
      remaining,
      expectedSecondsToFinish: Math.ceil(remaining / bucket.perMinute * 60),
      done: remaining === 0,
      queued: this.queue.size,
      counters: { ...this.counters }
    }
  }

  private next (): { job: NarrativeJob, weight: number } | undefined {
    let best: { job: NarrativeJob, weight: number } | undefined
    for (const item of this.queue.values()) if (best === undefined || item.weight > best.weight) best = item
    if (best !== undefined) this.queue.delete(best.job.key)
    return best
  }

  private async idle (ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        this.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      timer.unref()
      this.waiters.add(done)
    })
  }

  private wakeAll (): void {
    for (const done of [...this.waiters]) done()
  }

  private async work (): Promise<void> {
    while (!this.closed) {
      try {
        if (await this.paused()) {
          await this.idle(this.options.pauseCheckMs)
          continue
        }
        const item = this.next()
        if (item === undefined) {
          await this.idle(1000)
          continue
        }
        await this.write(item)
      } catch (err) {
        this.deps.logger.warn({ err: (err as Error).message }, 'rollout: a background write failed')
        await sleep(1000)
      }
    }
  }

  /**
   * A token from the fleet's bucket, waited for in turn: this process's
   * workers queue here, and only the first asks the bucket, sleeping as long
   * as it says. Without the turn every throttled worker would ask the bucket
   * each time a token might be there (dozens of workers, one token, a Redis
   * call each), a busy loop that costs the requests being answered meanwhile.
   * False when the rollout is closed or paused while waiting.
   */
  private async token (): Promise<boolean> {
    const turn = this.tokenTurn.then(async () => {
      const { bucket } = this.deps
      for (;;) {
        if (this.closed) return false
        const wait = await bucket.take()
        if (wait === 0) return true
        this.counters.throttled++
        if (await this.paused()) return false
        await sleep(Math.min(wait, 1000))
      }
    })
    this.tokenTurn = turn.catch(() => false)
    return await turn
  }

  /** Writes one key: claimed fleet-wide, a token taken, then built through the engine. */
  private async write (item: { job: NarrativeJob, weight: number }): Promise<void> {
    const { engine, builds, bucket, store } = this.deps
    const { job } = item
    const present = await engine.peek(job.key)
    if (present === undefined) {
      // The store cannot say: try again later.
      this.queue.set(job.key, item)
      await sleep(1000)
      return
    }
    if (present !== null) {
      this.counters.skipped++
      return
    }
    const claimToken = `${this.claimPrefix}/${randomUUID()}`
    if (!(await store.claim(job.key, claimToken, this.options.claimTtlMs))) {
      this.counters.skipped++
      return
    }
    let wrote = false
    try {
      if (!(await this.token())) {
        this.queue.set(job.key, item)
        return
      }
      // The first model call was paid for with the token just taken; each retry takes another, or the write fails.
      let prepaid = true
      const permit = async (): Promise<void> => {
        if (prepaid) {
          prepaid = false
          return
        }
        if ((await bucket.take()) !== 0) throw new Error('the rollout\'s rate (ROLLOUT_RATE) has no token for a retry')
      }
      const outcome = await engine.warm(job.key, builds.specFor({ ...job, permit }))
      if (outcome === 'failed') this.counters.failed++
      else if (outcome === 'warmed') this.counters.written++
      else this.counters.skipped++
      wrote = outcome !== 'failed'
    } catch (err) {
      this.counters.failed++
      this.deps.logger.warn({ key: job.key, err: (err as Error).message }, 'rollout: background write failed')
    } finally {
      // A written key stays claimed until the claim expires: nobody writes it twice meanwhile.
      if (!wrote) await store.unclaim(job.key, claimToken).catch(() => {})
    }
  }
}
