import type { NarrativeJob } from './adapter.ts'

/** What makes a job's key fresh (NarrativeService.warm). */
export interface Warmer {
  warm: (job: NarrativeJob) => Promise<'warmed' | 'skipped' | 'failed'>
}

export interface PrewarmResult { warmed: number, skipped: number, failed: number }

/**
 * Builds the entries for a list of jobs, at most `concurrency` at a time,
 * skipping fresh ones. Each job goes through the same locks as requests, so a
 * pre-warm running on several instances (or during traffic) pays once per key.
 */
export async function prewarm (warmer: Warmer, jobs: NarrativeJob[], concurrency = 4): Promise<PrewarmResult> {
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new Error('prewarm concurrency must be a whole number of at least 1')
  const result: PrewarmResult = { warmed: 0, skipped: 0, failed: 0 }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++]
      const outcome = await warmer.warm(job).catch(() => 'failed' as const)
      result[outcome]++
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker))
  return result
}
