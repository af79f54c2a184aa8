import type { NarrativeEngine } from '../cache/narrative-engine.js'
import { prewarm, type PrewarmResult } from '../cache/prewarm.js'
import { cacheKey } from '../domain/cache-key.js'
import { normalizeProfile, type Profile } from '../domain/profile.js'
import type { KeyCount } from '../db/analytics-repository.js'
import { PERIOD_DAYS, type Period } from './pattern.js'

export interface PrewarmTopDeps {
  engine: NarrativeEngine
  analytics: { topKeys: (sinceMs: number, limit: number) => Promise<KeyCount[]> }
  prefix: string
}

export interface PrewarmTopOptions { top: number, period: Period, concurrency: number }

/**
 * Pre-warms the most requested profiles of a period that are missing or stale:
 * what the admin route and `npm run prewarm` both do. Keys are rebuilt from
 * the stored profile, so after an engine or prompt change today's key is warmed.
 */
export async function prewarmTop (deps: PrewarmTopDeps, options: PrewarmTopOptions, now = Date.now()): Promise<PrewarmResult> {
  const since = now - PERIOD_DAYS[options.period] * 86_400_000
  const rows = await deps.analytics.topKeys(since, options.top)
  const jobs = new Map<string, { key: string, profile: ReturnType<typeof normalizeProfile>, locale: string }>()
  for (const row of rows) {
    const profile = normalizeProfile(row.profile as Profile)
    const key = cacheKey(profile, row.locale, { prefix: deps.prefix })
    jobs.set(key, { key, profile, locale: row.locale })
  }
  return await prewarm(deps.engine, [...jobs.values()], options.concurrency)
}
