import autocannon from 'autocannon'

export interface LoadResult {
  requests: number
  rps: number
  p50: number
  p95: number
  p99: number
  /** Requests that got no answer: timeouts included (autocannon counts them among its errors). */
  errors: number
  /** The errors by kind: 'timeout', or the socket error's code (ECONNRESET, ...). */
  errorKinds: Record<string, number>
  non2xx: number
  /** Every response time (ms), sorted. */
  latencies: number[]
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

/** The median of unsorted figures. */
export function median (xs: number[]): number {
  return percentile([...xs].sort((a, b) => a - b), 50)
}

/**
 * autocannon against one URL with one body. Every response time is kept, so
 * p95 is exact (autocannon's own table has p97.5 but no p95).
 */
export async function runLoad (opts: { url: string, body: unknown, connections: number, seconds: number, headers?: Record<string, string>, /** requests a second over all connections; unset: as fast as answered */ rate?: number }): Promise<LoadResult> {
  const latencies: number[] = []
  let instance!: autocannon.Instance
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon({
      url: opts.url,
      method: 'POST',
      connections: opts.connections,
      duration: opts.seconds,
      headers: { 'content-type': 'application/json', ...opts.headers },
      body: JSON.stringify(opts.body),
      ...(opts.rate !== undefined ? { overallRate: opts.rate } : {})
    }, (err, result) => { if (err !== null && err !== undefined) reject(err); else resolve(result) })
  })
  instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => { latencies.push(responseTime) })
  const errorKinds: Record<string, number> = {}
  instance.on('reqError', (err: NodeJS.ErrnoException) => {
    const kind = err.message === 'request timed out' ? 'timeout' : err.code ?? err.message
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
  })
  const result = await done
  latencies.sort((a, b) => a - b)
  return {
    requests: result.requests.total,
    rps: result.requests.average,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    errors: result.errors,
    errorKinds,
    non2xx: result.non2xx,
    latencies
  }
}

/**
 * Runs of one target, taken in turn with other targets' runs, as one result:
 * throughput is the median run's (one run in a slow spell of the machine does
 * not decide it), percentiles are over every response of every run.
 */
export function combineRuns (runs: LoadResult[]): LoadResult & { runsRps: number[] } {
  const latencies = runs.flatMap(r => r.latencies).sort((a, b) => a - b)
  const runsRps = runs.map(r => r.rps)
  const errorKinds: Record<string, number> = {}
  for (const r of runs) for (const [kind, n] of Object.entries(r.errorKinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + n
  return {
    requests: runs.reduce((n, r) => n + r.requests, 0),
    rps: median(runsRps),
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    errorKinds,
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    latencies,
    runsRps
  }
}
