import { silentLogger, type Logger } from '../swr/logger.ts'
import { isAnalyticsEvent, type AnalyticsEvent } from './event.ts'
import { RowGroups } from './row-groups.ts'
import { settledWithin } from '../timeout.ts'

/** Where batches go: AnalyticsRepository fits. */
export interface AnalyticsSink {
  insertBatch(events: readonly AnalyticsEvent[]): Promise<unknown>
}

export interface AnalyticsBufferOptions {
  repository: AnalyticsSink
  logger?: Logger
  /** ms clock, for log throttling. Default Date.now. */
  clock?: () => number
  /** The timer writes what is buffered this often. Default 1000. */
  flushIntervalMs?: number
  /** Events per INSERT; a full batch is written at once, without waiting for the timer. Default 500. */
  batchSize?: number
  /** Most rows held in memory (queued, waiting for their one retry, or being written). Default 10000. */
  maxBuffered?: number
  /** How long close() may spend writing what is left. Default 3000. */
  closeTimeoutMs?: number
  /**
   * False while the database is not open yet (start-up): nothing is written
   * and nothing counts as a failed write; events wait in the buffer, within
   * maxBuffered. Default: always writable.
   */
  writable?: () => boolean
}

export interface AnalyticsBufferCounters {
  /** Calls to record(). */
  recorded: number
  /** Events written to the database. */
  written: number
  /** Events lost: refused (buffer full, closed, malformed), or in a batch that failed twice, or left at close. */
  dropped: number
  /** Events removed on purpose by discardUser. */
  discarded: number
  /** Batch writes that failed (each attempt). */
  failedWrites: number
}

/** Warnings of one kind are logged at most this often. */
const WARN_EVERY_MS = 10_000

function positiveInt (name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`AnalyticsBuffer ${name} must be a positive whole number, got ${String(value)}`)
  return v
}

/** The weight of a queued row: how many identical requests it stands for. */
const weightOf = (e: AnalyticsEvent): number => e.count ?? 1
const sumOf = (rows: readonly AnalyticsEvent[]): number => rows.reduce((n, e) => n + weightOf(e), 0)

/**
 * Collects analytics events in memory and writes them in batches, off the
 * request path. record() is synchronous, O(1), never throws and never waits:
 * when the database is slow or down the buffer fills up to maxBuffered rows
 * and further events are dropped and counted, so memory stays bounded. A
 * failed batch is retried once on the next tick, then dropped and counted. One
 * write is in flight at a time. Counters count events (a coalesced row counts
 * for its `count`). Invariant: recorded = written + dropped + discarded + buffered.
 */
export class AnalyticsBuffer {
  readonly #repository: AnalyticsSink
  readonly #logger: Logger
  readonly #clock: () => number
  readonly #batchSize: number
  readonly #maxBuffered: number
  readonly #closeTimeoutMs: number
  readonly #writable: () => boolean
  readonly #counters: AnalyticsBufferCounters = { recorded: 0, written: 0, dropped: 0, discarded: 0, failedWrites: 0 }
  readonly #lastWarn = new Map<string, number>()
  readonly #timer: NodeJS.Timeout

  #queue: AnalyticsEvent[] = []
  /** The events the queued rows stand for. */
  #queuedEvents = 0
  /**
   * Queued rows that identical events are added to. Identical requests (same
   * answer, key and user) coalesce while queued: a hot key answered 10,000
   * times a second is one row a second with count 10,000, not 10,000 INSERTs
   * competing with the hit path for CPU. Model calls are never coalesced.
   */
  readonly #groups = new RowGroups()
  /** A batch whose first write failed: written first on the next tick, dropped if that fails too. */
  #retry: AnalyticsEvent[] | null = null
  #inFlightRows = 0
  #inFlightEvents = 0
  #flushing: Promise<void> | null = null
  #scheduled = false
  /**
   * Set when a write fails, cleared by the next tick (or a write that
   * succeeds): until then a full queue waits for the timer instead of
   * starting a drain at once, so a database that is down is tried once a tick
   * rather than in a loop that would burn the backlog in milliseconds.
   */
  #backingOff = false
  #closed = false
  /** Set when close() ran out of time: nothing is retried any more. */
  #abandoned = false
  #closing: Promise<void> | undefined

  constructor (opts: AnalyticsBufferOptions) {
    if (typeof opts?.repository?.insertBatch !== 'function') throw new TypeError('AnalyticsBuffer needs a repository with insertBatch(events)')
    this.#repository = opts.repository
    this.#logger = opts.logger ?? silentLogger
    this.#clock = opts.clock ?? Date.now
    const flushIntervalMs = positiveInt('flushIntervalMs', opts.flushIntervalMs, 1000)
    this.#batchSize = positiveInt('batchSize', opts.batchSize, 500)
    this.#maxBuffered = positiveInt('maxBuffered', opts.maxBuffered, 10_000)
    this.#closeTimeoutMs = positiveInt('closeTimeoutMs', opts.closeTimeoutMs, 3000)
    this.#writable = opts.writable ?? (() => true)
    if (this.#batchSize > this.#maxBuffered) throw new TypeError(`AnalyticsBuffer batchSize (${this.#batchSize}) must not exceed maxBuffered (${this.#maxBuffered})`)
    this.#timer = setInterval(() => { this.#tick() }, flushIntervalMs)
    this.#timer.unref()
  }

  /** A snapshot of the counters. */
  get counters (): AnalyticsBufferCounters {
    return { ...this.#counters }
  }

  /** Events held in memory: queued, awaiting their retry, or being written. */
  get buffered (): number {
    return this.#heldEvents + this.#inFlightEvents
  }

  /** Events queued or awaiting their retry (not those being written). */
  get #heldEvents (): number {
    return this.#queuedEvents + (this.#retry === null ? 0 : sumOf(this.#retry))
  }

  /** Rows held in memory (identical events share one). Never above maxBuffered. */
  get bufferedRows (): number {
    return this.#queue.length + (this.#retry?.length ?? 0) + this.#inFlightRows
  }

  get maxBuffered (): number {
    return this.#maxBuffered
  }

  /** Queues one event. Never throws, never waits; the event is kept as given (do not mutate it afterwards). */
  record (event: AnalyticsEvent): void {
    try {
      this.#counters.recorded++
      if (this.#closed) return this.#drop(1, 'closed', 'analytics event recorded after close: dropped')
      if (!isAnalyticsEvent(event)) return this.#drop(1, 'invalid', 'malformed analytics event: dropped')
      const grouped = RowGroups.groups(event)
      const row = grouped ? this.#groups.get(event) : undefined
      if (row !== undefined) {
        row.count = weightOf(row) + 1
        this.#queuedEvents++
        return
      }
      if (this.bufferedRows >= this.#maxBuffered) return this.#drop(1, 'full', 'analytics buffer full (database slow or down): dropping events')
      if (!grouped) this.#queue.push(event)
      else {
        // A copy: the caller's object is never changed.
        const copy = { ...event, count: 1 }
        this.#queue.push(copy)
        this.#groups.set(event, copy)
      }
      this.#queuedEvents++
      if (this.#queue.length >= this.#batchSize) this.#scheduleFlush()
    } catch {
      // record() must never fail its caller
    }
  }

  /**
   * Writes what is buffered now (the pending retry first, then the queue in
   * batches); resolves when done or when a write failed. Never rejects.
   * Concurrent calls share the write in flight.
   */
  flush (): Promise<void> {
    if (this.#flushing === null) {
      this.#flushing = this.#drain().finally(() => {
        this.#flushing = null
        // Filled up while that drain wrote: the next one starts at once (after a failure, at the next tick).
        if (this.#queue.length >= this.#batchSize) this.#scheduleFlush()
      })
      return this.#flushing
    }
    // A drain writes what was queued when it began; rows queued since need the next one.
    return this.#queue.length === 0 && this.#retry === null ? this.#flushing : this.#flushing.then(async () => { await this.flush() })
  }

  /**
   * Removes the buffered events of this user (for a deletion request), then
   * waits for a write already in flight, so that once it resolves nothing of
   * the user's recorded so far is still on its way to the database. Resolves
   * with the number of events removed.
   */
  async discardUser (userId: string): Promise<number> {
    const keep = (e: AnalyticsEvent): boolean => e.userId !== userId
    const before = this.#heldEvents
    this.#setQueue(this.#queue.filter(keep))
    if (this.#retry !== null) {
      this.#retry = this.#retry.filter(keep)
      if (this.#retry.length === 0) this.#retry = null
    }
    const removed = before - this.#heldEvents
    this.#counters.discarded += removed
    if (this.#flushing !== null) await this.#flushing
    return removed
  }

  /**
   * Stops the timer and writes what is left, spending at most closeTimeoutMs;
   * what could not be written by then is dropped and counted. Idempotent.
   */
  close (): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true
      clearInterval(this.#timer)
      const writeAll = (async () => {
        await this.flush()
        // a batch that failed once gets its one retry now, then whatever is still queued
        if (this.#retry !== null || this.#queue.length > 0) await this.flush()
      })()
      await settledWithin(writeAll, this.#closeTimeoutMs)
      this.#abandoned = true
      const left = this.#heldEvents
      this.#setQueue([])
      this.#retry = null
      // a write still in flight counts itself when it ends (written, or dropped since abandoned)
      if (left > 0) this.#drop(left, 'close', 'analytics events not written before close: dropped')
    })()
    return this.#closing
  }

  #tick (): void {
    this.#backingOff = false
    if (this.#flushing === null && (this.#queue.length > 0 || this.#retry !== null)) this.flush().catch(() => {})
  }

  #scheduleFlush (): void {
    if (this.#scheduled || this.#flushing !== null || this.#backingOff) return // the running drain schedules the next when it ends
    if (!this.#writable()) return // the timer's tick writes once the database is open
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.flush().catch(() => {})
    })
  }

  async #drain (): Promise<void> {
    // Not open yet: the rows stay queued (a full buffer drops new events, counted), nothing is tried.
    if (!this.#writable()) return
    if (this.#retry !== null) {
      const batch = this.#retry
      this.#retry = null
      if (!await this.#write(batch, true)) return
    }
    // Only the rows queued now. Rows queued during the writes wait for the
    // next drain, so they coalesce: a drain that went on while anything was
    // queued would write a row of one hot key's hits for every write's length.
    let rows = this.#queue.length
    while (rows > 0 && this.#queue.length > 0 && !this.#abandoned) {
      const batch = this.#takeBatch(Math.min(rows, this.#batchSize))
      rows -= batch.length
      if (!await this.#write(batch, false)) return
    }
  }

  /** The next batch off the queue; identical events recorded from now on start new rows. */
  #takeBatch (size: number): AnalyticsEvent[] {
    const batch = this.#queue.splice(0, size)
    for (const row of batch) this.#groups.forget(row)
    this.#queuedEvents -= sumOf(batch)
    return batch
  }

  #setQueue (rows: AnalyticsEvent[]): void {
    this.#queue = rows
    this.#queuedEvents = sumOf(rows)
    this.#groups.clear()
    for (const row of rows) if (RowGroups.groups(row)) this.#groups.set(row, row)
  }

  /** Writes one batch; on failure keeps it for one retry (or drops it). Resolves whether it was written. */
  async #write (batch: AnalyticsEvent[], isRetry: boolean): Promise<boolean> {
    const events = sumOf(batch)
    this.#inFlightRows += batch.length
    this.#inFlightEvents += events
    try {
      await this.#repository.insertBatch(batch)
      this.#counters.written += events
      this.#backingOff = false
      return true
    } catch (err) {
      this.#counters.failedWrites++
      this.#backingOff = true
      const reason = (err as Error)?.message
      if (isRetry || this.#abandoned || this.#retry !== null) {
        this.#drop(events, 'write', 'analytics batch failed twice: dropped', reason)
      } else {
        this.#retry = batch
        this.#warn('retry', 'analytics batch write failed: retrying once on the next tick', reason)
      }
      return false
    } finally {
      this.#inFlightRows -= batch.length
      this.#inFlightEvents -= events
    }
  }

  #drop (n: number, kind: string, msg: string, reason?: string): void {
    this.#counters.dropped += n
    this.#warn(kind, msg, reason)
  }

  #warn (kind: string, msg: string, reason?: string): void {
    try {
      const now = this.#clock()
      const last = this.#lastWarn.get(kind)
      if (last !== undefined && now - last < WARN_EVERY_MS) return
      this.#lastWarn.set(kind, now)
      this.#logger.warn({ analytics: { ...this.#counters, buffered: this.buffered }, reason }, msg)
    } catch {
      // logging must not break recording
    }
  }
}
