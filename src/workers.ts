import type { Cluster, Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { AggregatorRegistry, type Registry } from 'prom-client'

/** The IPC messages between a worker and the primary (a worker asks, the primary answers). */
const METRICS_REQUEST = 'narrative:metrics-request'
const METRICS_RESPONSE = 'narrative:metrics-response'

export interface PrimaryLogger {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  error: (obj: object, msg: string) => void
}

export interface PrimaryOptions {
  cluster: Cluster
  workers: number
  log: PrimaryLogger
}

/** A worker that dies is replaced after this delay, doubled for each death in a row (capped at 30 s). */
const RESTART_DELAY_MS = 1000
/** A worker that lived this long was healthy: its death does not count towards the restart backoff. */
const HEALTHY_LIFETIME_MS = 30_000
/** After the first signal, workers still running after this long are killed. */
const SHUTDOWN_TIMEOUT_MS = 10_000

/**
 * The cluster primary: forks the workers (each one the whole app, sharing the
 * listening port through node:cluster's round robin), replaces a worker that
 * dies, gathers /metrics from every worker for whichever worker is asked, and
 * on SIGTERM or SIGINT lets every worker close gracefully, then exits 0 if
 * they all did. It serves no requests itself, so it never blocks the accept
 * of a new connection behind request work.
 */
export function runPrimary (opts: PrimaryOptions): void {
  const { cluster, log } = opts
  const exit = (code: number): void => process.exit(code)
  // Without JWT_SECRET (development) every worker must still verify the tokens the others sign.
  const env = process.env.JWT_SECRET === undefined ? { JWT_SECRET: randomBytes(48).toString('base64url') } : {}
  const aggregator = new AggregatorRegistry()
  let stopping = false
  let failures = 0
  let exitCode = 0
  const startedAt = new Map<Worker, number>()
  /** Workers that have opened the port: only these can have had requests to lose. */
  const listening = new WeakSet<Worker>()

  const fork = (): void => {
    const worker = cluster.fork(env)
    startedAt.set(worker, Date.now())
    worker.on('message', (message: unknown) => { answerMetrics(worker, message) })
    worker.on('listening', () => { listening.add(worker) })
  }

  const answerMetrics = (worker: Worker, message: unknown): void => {
    const m = message as { type?: unknown, id?: unknown } | null
    if (m === null || typeof m !== 'object' || m.type !== METRICS_REQUEST) return
    aggregator.clusterMetrics().then(
      text => worker.isConnected() && worker.send({ type: METRICS_RESPONSE, id: m.id, text, contentType: aggregator.contentType }),
      (err: Error) => worker.isConnected() && worker.send({ type: METRICS_RESPONSE, id: m.id, error: err.message })
    )
  }

  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - (startedAt.get(worker) ?? Date.now())
    startedAt.delete(worker)
    if (stopping) {
      // A worker still starting when the signal came had nothing in hand: its abrupt end is no failure.
      if (code !== 0 && listening.has(worker)) exitCode = 1
      if (startedAt.size === 0) {
        log.info({ exitCode }, 'all workers stopped')
        exit(exitCode)
      }
      return
    }
    failures = lived >= HEALTHY_LIFETIME_MS ? 1 : failures + 1
    const delay = Math.min(30_000, RESTART_DELAY_MS * 2 ** (failures - 1))
    log.error({ pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died; starting another')
    setTimeout(() => { if (!stopping) fork() }, delay).unref()
  })

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second signal: no more waiting.
      for (const worker of startedAt.keys()) worker.process.kill('SIGKILL')
      return
    }
    stopping = true
    log.info({ signal, workers: startedAt.size }, 'closing: asking every worker to finish')
    if (startedAt.size === 0) { exit(0); return }
    for (const worker of startedAt.keys()) worker.process.kill('SIGTERM')
    setTimeout(() => {
      log.error({ workers: startedAt.size }, 'workers still running at the shutdown deadline; killing them')
      exitCode = 1
      for (const worker of startedAt.keys()) worker.process.kill('SIGKILL')
    }, SHUTDOWN_TIMEOUT_MS).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  log.info({ workers: opts.workers }, 'starting workers')
  for (let i = 0; i < opts.workers; i++) fork()
}

let nextMetricsRequest = 0

/**
 * In a worker: every worker's metrics, summed by the primary (prom-client's
 * AggregatorRegistry; a worker answers it once `shareMetrics` has run).
 */
export async function fleetMetrics (timeoutMs = 6000): Promise<{ text: string, contentType: string }> {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error('not a cluster worker')
  const id = nextMetricsRequest++
  return await new Promise((resolve, reject) => {
    const onMessage = (message: unknown): void => {
      const m = message as { type?: unknown, id?: unknown, text?: string, contentType?: string, error?: string } | null
      if (m === null || typeof m !== 'object' || m.type !== METRICS_RESPONSE || m.id !== id) return
      settle()
      if (typeof m.text === 'string') resolve({ text: m.text, contentType: m.contentType ?? 'text/plain' })
      else reject(new Error(`the primary could not gather the workers' metrics: ${m.error ?? 'no answer'}`))
    }
    const timer = setTimeout(() => { settle(); reject(new Error(`the primary did not gather the workers' metrics within ${timeoutMs} ms`)) }, timeoutMs)
    const settle = (): void => { clearTimeout(timer); process.off('message', onMessage) }
    process.on('message', onMessage)
    send({ type: METRICS_REQUEST, id })
  })
}

/** In a worker: answer the primary's requests for this worker's metrics from `registry`. */
export function shareMetrics (registry: Registry): void {
  // Constructing one installs prom-client's worker-side listener.
  new AggregatorRegistry() // eslint-disable-line no-new
  AggregatorRegistry.setRegistries(registry)
}
