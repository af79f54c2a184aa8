import type { NarrativeJob } from '../narrative/adapter.ts'
import { prewarm, type PrewarmResult, type Warmer } from '../narrative/prewarm.ts'
import type { KeyCount } from '../db/analytics-repository.ts'
import { PERIOD_DAYS, type Period } from './pattern.ts'

export interface PrewarmTopDeps {
  /** The narrative service (NarrativeService.warm). */
  warmer: Warmer
  analytics: { topKeys: (sinceMs: number, limit: number) => Promise<KeyCount[]> }
  /**
   * The job a stored profile and locale make today, or why today's request
   * path would refuse them (NarrativeService.storedJob): the schema, SYSTEMS,
   * LOCALES and every domain rule.
   */
  jobOf: (profile: unknown, locale: unknown) => NarrativeJob | { refused: string }
  /** Told each refused row, for the log. */
  onRefused?: (key: string, reason: string) => void
}

export interface PrewarmTopOptions { top: number, period: Period, concurrency: number }

/** What a pre-warm did: the engine's counts, and the stored profiles it refused to build. */
export interface PrewarmTopResult extends PrewarmResult { refused: number }

/**
 * Pre-warms the most requested profiles of a period that are missing or stale:
 * what the admin route and `npm run prewarm` both do. Keys are rebuilt from
 * the stored profile, so after an engine or prompt change today's key is warmed.
 * Each stored profile is checked again as a request would be: a row that
 * today's rules refuse (written before a rule, SYSTEMS or LOCALES changed, or
 * by hand) is counted as refused and never costs a model call.
 */
export async function prewarmTop (deps: PrewarmTopDeps, options: PrewarmTopOptions, now = Date.now()): Promise<PrewarmTopResult> {
  const since = now - PERIOD_DAYS[options.period] * 86_400_000
  const rows = await deps.analytics.topKeys(since, options.top)
  const jobs = new Map<string, NarrativeJob>()
  let refused = 0
  for (const row of rows) {
    const job = deps.jobOf(row.profile, row.locale)
    if ('refused' in job) {
      refused++
      deps.onRefused?.(row.key, job.refused)
      continue
    }
    jobs.set(job.key, job)
  }
  return { ...await prewarm(deps.warmer, [...jobs.values()], options.concurrency), refused }
}
