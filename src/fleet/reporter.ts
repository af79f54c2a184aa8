/**
 * Fleet-wide figures: each instance writes its own figures to Redis every few
 * seconds under a key that expires, and reads every live instance's back. An
 * instance that dies (SIGKILL, a lost host) leaves the view when its key
 * expires; one that stops cleanly removes itself at once. Plain class: the
 * Redis commands, the figures and the clock are injected.
 */

/** The numeric figures summed over the fleet (the engine's counter names, unchanged). */
export const SUMMED = [
  'hits', 'staleHits', 'durableHits', 'misses', 'fallbacks', 'generations',
  'refreshStarted', 'refreshSkippedLocked', 'refreshSucceeded', 'refreshFailed',
  'analyticsRecorded', 'analyticsWritten', 'analyticsDropped'
] as const
export type SummedFigure = typeof SUMMED[number]
export type Figures = Record<SummedFigure, number>

export interface InstanceReport extends Figures {
  /** host:pid:random, unique per process start. */
  id: string
  host: string
  pid: number
  startedAt: number
  reportedAt: number
  /** closed, open or half-open: this instance's Redis breaker. */
  breaker: string
}

/** The few Redis commands the reporter needs (ioredis Redis or Cluster satisfy it). */
export interface FleetRedis {
  set: (key: string, value: string, px: 'PX', ttlMs: number) => Promise<unknown>
  zadd: (key: string, score: number, member: string) => Promise<unknown>
  zremrangebyscore: (key: string, min: string | number, max: string | number) => Promise<unknown>
  zrangebyscore: (key: string, min: string | number, max: string | number) => Promise<string[]>
  zrem: (key: string, member: string) => Promise<unknown>
  mget: (...keys: string[]) => Promise<Array<string | null>>
  del: (...keys: string[]) => Promise<unknown>
  pexpire: (key: string, ttlMs: number) => Promise<unknown>
}

export interface FleetView {
  /** Where the other instances came from: redis, or local when there is no Redis (or it failed). */
  source: 'redis' | 'local'
  instances: Array<InstanceReport & { self: boolean }>
  total: Figures & { instances: number, hitRate: number }
}

export interface FleetReporterOptions {
  /** Undefined: no Redis, the fleet is this instance alone. */
  redis: FleetRedis | undefined
  /** The cache prefix: the fleet's keys are `{prefix:fleet}:…` (one Cluster slot). */
  prefix: string
  id: string
  host: string
  pid: number
  /** This instance's figures now. */
  snapshot: () => Figures & { breaker: string }
  intervalMs?: number
  /** A report's lifetime: three missed reports and the instance is gone from the view. */
  ttlMs?: number
  clock?: () => number
  onError?: (err: Error) => void
}

export class FleetReporter {
  readonly id: string
  readonly intervalMs: number
  readonly ttlMs: number
  readonly counters = { reported: 0, failed: 0 }
  private readonly o: FleetReporterOptions
  private readonly clock: () => number
  private readonly startedAt: number
  private readonly membersKey: string
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor (options: FleetReporterOptions) {
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(options.prefix)) throw new TypeError(`FleetReporter: prefix must be a cache prefix (got ${JSON.stringify(options.prefix)})`)
    this.o = options
    this.id = options.id
    this.intervalMs = options.intervalMs ?? 5000
    this.ttlMs = options.ttlMs ?? 15_000
    if (!(this.intervalMs > 0) || !(this.ttlMs > this.intervalMs)) throw new TypeError(`FleetReporter: ttlMs (${this.ttlMs}) must be above intervalMs (${this.intervalMs})`)
    this.clock = options.clock ?? Date.now
    this.startedAt = this.clock()
    this.membersKey = `{${options.prefix}:fleet}:members`
  }

  private instanceKey (id: string): string {
    return `{${this.o.prefix}:fleet}:instance:${id}`
  }

  /** This instance's report as of now. */
  own (): InstanceReport {
    const { breaker, ...figures } = this.o.snapshot()
    return { id: this.id, host: this.o.host, pid: this.o.pid, startedAt: this.startedAt, reportedAt: this.clock(), breaker, ...figures }
  }

  /** Reports now, then every intervalMs (an unref'd timer). */
  start (): void {
    if (this.o.redis === undefined || this.timer !== undefined) return
    this.report().catch(() => {})
    this.timer = setInterval(() => { this.report().catch(() => {}) }, this.intervalMs)
    this.timer.unref()
  }

  /** Writes this instance's report; never rejects (a failure is counted and passed to onError). */
  async report (): Promise<boolean> {
    const redis = this.o.redis
    if (redis === undefined || this.stopped) return false
    const now = this.clock()
    const report = this.own()
    try {
      await Promise.all([
        redis.set(this.instanceKey(this.id), JSON.stringify(report), 'PX', this.ttlMs),
        redis.zadd(this.membersKey, now, this.id),
        redis.zremrangebyscore(this.membersKey, '-inf', now - this.ttlMs),
        redis.pexpire(this.membersKey, this.ttlMs * 4)
      ])
      this.counters.reported++
      return true
    } catch (err) {
      this.counters.failed++
      this.o.onError?.(err as Error)
      return false
    }
  }

  /** Every live instance (this one from its figures of now) and their sum. */
  async view (): Promise<FleetView> {
    const self = { ...this.own(), self: true }
    let others: InstanceReport[] = []
    let source: FleetView['source'] = 'local'
    const redis = this.o.redis
    if (redis !== undefined) {
      try {
        const ids = (await redis.zrangebyscore(this.membersKey, this.clock() - this.ttlMs, '+inf')).filter(id => id !== this.id)
        const values = ids.length === 0 ? [] : await redis.mget(...ids.map(id => this.instanceKey(id)))
        others = values.flatMap(v => {
          if (v === null) return []
          try { return [JSON.parse(v) as InstanceReport] } catch { return [] }
        })
        source = 'redis'
      } catch (err) {
        this.o.onError?.(err as Error)
      }
    }
    const instances = [self, ...others.map(r => ({ ...r, self: false }))]
      .sort((a, b) => (a.self === b.self ? a.id.localeCompare(b.id) : a.self ? -1 : 1))
    const total = Object.fromEntries(SUMMED.map(k => [k, instances.reduce((sum, r) => sum + (Number(r[k]) || 0), 0)])) as Figures
    const answered = total.hits + total.staleHits + total.durableHits + total.misses + total.fallbacks
    const hitRate = answered === 0 ? 0 : Math.round(((total.hits + total.staleHits + total.durableHits) / answered) * 10_000) / 10_000
    return { source, instances, total: { ...total, instances: instances.length, hitRate } }
  }

  /** Stops reporting and takes this instance out of the view at once. */
  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    const redis = this.o.redis
    if (redis === undefined) return
    await Promise.all([redis.zrem(this.membersKey, this.id), redis.del(this.instanceKey(this.id))]).catch(() => {})
  }
}
