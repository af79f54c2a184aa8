import { silentLogger, type Logger } from '../swr/logger.ts'

export interface RetentionOptions {
  /** Rows older than this go; 0 turns retention off. */
  retentionMs: number
  /** How often to look. Default one hour. */
  intervalMs?: number
  /** Deletes what is older than a cutoff; resolves with how many went. */
  deleteBefore: (beforeMs: number) => Promise<number>
  logger?: Logger
  clock?: () => number
}

/**
 * Deletes old analytics on a timer, one pass at a time: now (shortly after
 * start-up), then every interval. Failures are logged and the next pass
 * tries again; nothing here can fail a request or keep the process alive.
 */
export class AnalyticsRetention {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private readonly clock: () => number
  private readonly logger: Logger
  /** Rows deleted since start, and passes that failed. */
  readonly counters = { deleted: 0, failedPasses: 0 }

  private readonly options: RetentionOptions

  constructor (options: RetentionOptions) {
    this.options = options
    if (!(options.retentionMs >= 0)) throw new TypeError('retentionMs must be zero or positive')
    this.clock = options.clock ?? Date.now
    this.logger = options.logger ?? silentLogger
  }

  get enabled (): boolean {
    return this.options.retentionMs > 0
  }

  start (firstDelayMs = 10_000): void {
    if (!this.enabled || this.stopped) return
    this.schedule(firstDelayMs)
  }

  /** One pass now; concurrent calls share it. */
  async runOnce (): Promise<void> {
    this.running ??= (async () => {
      const cutoff = this.clock() - this.options.retentionMs
      try {
        const deleted = await this.options.deleteBefore(cutoff)
        this.counters.deleted += deleted
        if (deleted > 0) this.logger.info({ deleted, before: new Date(cutoff).toISOString() }, 'old analytics deleted')
      } catch (err) {
        this.counters.failedPasses++
        this.logger.warn({ err: (err as Error).message }, 'analytics retention pass failed; the next one tries again')
      }
    })().finally(() => { this.running = undefined })
    return await this.running
  }

  /** Stops the timer and waits for a pass under way. */
  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }

  private schedule (delayMs: number): void {
    this.timer = setTimeout(() => {
      this.runOnce().finally(() => { if (!this.stopped) this.schedule(this.options.intervalMs ?? 3_600_000) }).catch(() => {})
    }, delayMs)
    this.timer.unref()
  }
}
