import { randomUUID } from 'node:crypto'
import { Cron } from 'croner'
import type { Logger } from '../swr/logger.ts'
import type { LeaseStore } from './lease.ts'

export interface PrewarmRunResult { warmed: number, skipped: number, failed: number, refused: number, budgetLeft: number }

export interface ScheduledPrewarmDeps {
  /** A cron expression (croner: 5 fields, or 6 with seconds first). */
  schedule: string
  leases: LeaseStore
  /** The pre-warm itself; `signal` aborts when this instance stops (or dies, in tests). */
  run: (signal: AbortSignal) => Promise<PrewarmRunResult>
  /** Namespace of the leases (`{prefix}:{firing}`). */
  prefix: string
  logger: Logger
  /** A lease lives this long unless renewed (every third of it) by its holder. */
  leaseTtlMs?: number
  /** How long a firing's "done" mark is kept: no instance runs that firing again. */
  doneKeepMs?: number
  /** Told when a run starts and ends (metrics). */
  onRun?: (event: 'started' | 'ended' | 'failed', run: PrewarmRun) => void
}

export interface PrewarmRun {
  /** The firing's scheduled time (ms), the same on every instance. */
  firing: number
  startedAt: number
  endedAt?: number
  /** True when this instance took over the lease of a holder that stopped renewing it. */
  takenOver: boolean
  result?: PrewarmRunResult
  error?: string
}

export interface ScheduledPrewarmStatus {
  schedule: string
  nextRunAt: string | null
  running: PrewarmRun | null
  /** The last runs on this instance, newest first. */
  runs: PrewarmRun[]
}

const sleep = async (ms: number, signal: AbortSignal): Promise<void> => await new Promise(resolve => {
  const timer = setTimeout(done, ms)
  timer.unref()
  signal.addEventListener('abort', done, { once: true })
  function done (): void {
    clearTimeout(timer)
    signal.removeEventListener('abort', done)
    resolve()
  }
})

/**
 * The pre-warm on a schedule, on exactly one instance of the fleet per
 * firing. Every instance's cron fires; each asks for the firing's lease
 * (`SET NX PX`); the one that gets it runs, renewing it every third of its
 * TTL, and marks the firing done when it ends, so nobody runs it again. The
 * others watch the lease until the firing is done: a holder that dies stops
 * renewing, its lease expires, and a watcher takes it over and runs the
 * firing (the pre-warm skips what is already fresh).
 */
export class ScheduledPrewarm {
  readonly runs: PrewarmRun[] = []
  private readonly cron: Cron
  private readonly deps: ScheduledPrewarmDeps
  private readonly leaseTtlMs: number
  private readonly stopping = new AbortController()
  private running: PrewarmRun | undefined
  private readonly firings = new Set<Promise<void>>()

  constructor (deps: ScheduledPrewarmDeps) {
    this.deps = deps
    this.leaseTtlMs = deps.leaseTtlMs ?? 30_000
    this.cron = new Cron(deps.schedule, { paused: true, protect: false }, () => {
      // The scheduled second, the same on every instance (a cron fires a few ms after it).
      const firing = Math.round(Date.now() / 1000) * 1000
      const work = this.fire(firing).catch(err => { deps.logger.warn({ err: (err as Error).message, firing }, 'scheduled pre-warm failed') })
      this.firings.add(work)
      work.finally(() => this.firings.delete(work)).catch(() => {})
    })
  }

  start (): void {
    this.cron.resume()
  }

  /** Stops the schedule; a run under way is aborted, not marked done: its lease expires and another instance takes the firing over. */
  async close (): Promise<void> {
    this.cron.stop()
    this.stopping.abort()
    await Promise.all([...this.firings])
  }

  /** Stops everything at once, releasing and marking nothing: what a killed process leaves behind (tests). */
  kill (): void {
    this.cron.stop()
    this.stopping.abort()
  }

  status (): ScheduledPrewarmStatus {
    const next = this.cron.nextRun()
    return { schedule: this.deps.schedule, nextRunAt: next === null ? null : next.toISOString(), running: this.running ?? null, runs: this.runs.slice(-10).reverse() }
  }

  /** One firing: take its lease and run it, or watch it until it is done (and take it over if its holder dies). */
  async fire (firing: number): Promise<void> {
    const { leases, prefix } = this.deps
    const key = `${prefix}:${firing}`
    const token = randomUUID()
    const signal = this.stopping.signal
    let watched = false
    // Watch no longer than a day: a firing nobody can finish is left to the next.
    const giveUpAt = Date.now() + 86_400_000
    while (!signal.aborted && Date.now() < giveUpAt) {
      let got: boolean | 'done'
      try {
        got = await leases.acquire(key, token, this.leaseTtlMs)
      } catch (err) {
        this.deps.logger.warn({ err: (err as Error).message }, 'scheduled pre-warm: the lease store failed; trying again')
        got = false
      }
      if (got === 'done') return
      if (got) {
        await this.runHolding(key, token, firing, watched)
        return
      }
      watched = true
      await sleep(this.leaseTtlMs / 2, signal)
    }
  }

  private async runHolding (key: string, token: string, firing: number, takenOver: boolean): Promise<void> {
    const { leases, logger } = this.deps
    const run: PrewarmRun = { firing, startedAt: Date.now(), takenOver }
    this.running = run
    this.runs.push(run)
    if (this.runs.length > 100) this.runs.shift()
    const lost = new AbortController()
    const signal = AbortSignal.any([this.stopping.signal, lost.signal])
    const renewer = setInterval(() => {
      if (this.stopping.signal.aborted) return
      leases.renew(key, token, this.leaseTtlMs).then(held => {
        if (!held) {
          logger.warn({ firing }, 'scheduled pre-warm: the lease was lost; stopping')
          lost.abort()
        }
      }, () => {})
    }, this.leaseTtlMs / 3)
    renewer.unref()
    this.deps.onRun?.('started', run)
    try {
      run.result = await this.deps.run(signal)
      run.endedAt = Date.now()
      this.deps.onRun?.('ended', run)
      logger.info({ firing, ...run.result, takenOver }, 'scheduled pre-warm done')
    } catch (err) {
      run.error = (err as Error).message
      run.endedAt = Date.now()
      this.deps.onRun?.('failed', run)
      logger.warn({ firing, err: run.error }, 'scheduled pre-warm failed')
    } finally {
      clearInterval(renewer)
      if (this.running === run) this.running = undefined
    }
    // A killed instance marks nothing (its lease expires); one that stops cleanly lets another take over at once.
    if (this.stopping.signal.aborted) return
    // Failed runs are marked done too: the next firing tries again, rather than the fleet in a loop.
    if (!lost.signal.aborted) await leases.finish(key, token, this.deps.doneKeepMs ?? 86_400_000).catch(() => {})
  }
}
