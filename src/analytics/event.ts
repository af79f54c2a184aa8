/**
 * What one request (or one model call) leaves in the analytics.
 *
 * - 'hit', 'stale', 'durable', 'miss', 'fallback', 'error': one per answered
 *   request, with the cache status it was answered with ('error': the request
 *   failed). These are the requests counted by the summary.
 * - 'generation': the extra record of one model call (its duration, tokens and
 *   model). Not a request: a 'miss' that called the model records a 'miss' and
 *   a 'generation'. Tokens and durations are read from 'generation' events only.
 * - 'repaid': the extra record of a generation of a key the durable tier
 *   already held (the model paid twice for one narrative). Not a request either.
 */
export const ANALYTICS_EVENT_TYPES = ['hit', 'stale', 'miss', 'durable', 'generation', 'repaid', 'fallback', 'error'] as const
export type AnalyticsEventType = typeof ANALYTICS_EVENT_TYPES[number]

export interface AnalyticsEvent {
  /** When it happened, in ms since the epoch. */
  at: number
  event: AnalyticsEventType
  /** The cache key. */
  key: string
  /** System names of the profile, most prominent first (topSystems counts the first). */
  systems: string[]
  durationMs?: number | null
  promptTokens?: number | null
  completionTokens?: number | null
  model?: string | null
  /** The request's userId: feeds the per-user index (user_keys) used for deletion. */
  userId?: string | null
  /** The request's profile and locale: with both, the key can be rebuilt by pre-warm (requested_profiles). */
  profile?: object | null
  locale?: string | null
  /**
   * How many identical requests this record stands for (default 1): the
   * buffer coalesces them while queued. `at` is the first one's time.
   */
  count?: number
}

const EVENT_TYPES: ReadonlySet<string> = new Set(ANALYTICS_EVENT_TYPES)

/** A cheap structural check, for input that did not come through the type system. */
export function isAnalyticsEvent (value: unknown): value is AnalyticsEvent {
  if (typeof value !== 'object' || value === null) return false
  const e = value as Record<string, unknown>
  return typeof e.event === 'string' && EVENT_TYPES.has(e.event) &&
    typeof e.key === 'string' && e.key.length > 0 &&
    typeof e.at === 'number' && Number.isFinite(e.at) &&
    Array.isArray(e.systems) &&
    (e.count === undefined || (Number.isSafeInteger(e.count) && (e.count as number) >= 1))
}
