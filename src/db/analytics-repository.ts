import type { AnalyticsEvent } from '../analytics/event.ts'
import type { Database } from './database.ts'
import { clampLimit, cleanJson, cleanText, exactText, optionalInt, optionalText } from './sanitize.ts'

export interface AnalyticsSummary {
  /** Requests: every event but 'generation' and 'repaid'. */
  totalRequests: number
  /** 'hit' + 'stale' + 'durable'. */
  cacheHits: number
  /** 'miss'. */
  cacheMisses: number
  fallbacks: number
  /** Model calls ('generation' events). */
  generations: number
  /** Of those, generations of a key the durable tier already held ('repaid' events). */
  repaidGenerations: number
  /** Mean duration of the generations that carry one; 0 when there were none. */
  avgGenerationTimeMs: number
  /** Tokens of the 'generation' events. */
  promptTokens: number
  completionTokens: number
  /** Per model ('unknown' when a generation named none), most generations first. */
  byModel: Array<{ model: string, promptTokens: number, completionTokens: number, generations: number }>
}

/** Requests of one minute, by how they were answered, and the model calls started in it. */
export interface MinuteBucket {
  /** The minute's start, ms since the epoch. */
  at: number
  hit: number
  stale: number
  durable: number
  miss: number
  fallback: number
  /** Requests that failed ('error' events other than refusals): 5xx, and 429s of the generation limit. */
  error: number
  /** Requests refused before any work ('error' events under the refused key): 400s of the domain rules. */
  refused: number
  /** Model calls ('generation' events). */
  generations: number
  /** Percentiles of the model calls' durations (ms), null when there was none. */
  generationP50Ms: number | null
  generationP95Ms: number | null
}

export interface SystemCount { system: string, count: number }
export interface KeyCount { key: string, count: number, profile: object, locale: string }

/** Longest text kept per column: keys are ~90 characters, user ids at most 64. */
const MAX_KEY = 512
const MAX_USER = 256
const MAX_SYSTEMS = 32
const MINUTE_MS = 60_000

/** One event as a JSON record for jsonb_to_recordset (absent values omitted, so they are SQL NULL). */
function toRecord (e: AnalyticsEvent): Record<string, unknown> {
  const systems: string[] = []
  for (const s of e.systems ?? []) {
    if (typeof s === 'string' && s !== '') systems.push(cleanText(s, 100))
    if (systems.length >= MAX_SYSTEMS) break
  }
  const profile = e.profile !== null && typeof e.profile === 'object' ? cleanJson(e.profile) : undefined
  const locale = optionalText(e.locale, 100)
  return {
    at: Math.round(e.at),
    event: e.event,
    count: optionalInt(e.count) ?? 1,
    key: cleanText(e.key, MAX_KEY),
    systems,
    duration_ms: optionalInt(e.durationMs) ?? undefined,
    prompt_tokens: optionalInt(e.promptTokens) ?? undefined,
    completion_tokens: optionalInt(e.completionTokens) ?? undefined,
    model: optionalText(e.model, 100) ?? undefined,
    // Exactly as given or not at all: a cleaned id could be another user's.
    user_id: exactText(e.userId, MAX_USER) ?? undefined,
    // requested_profiles needs both
    profile: profile !== undefined && locale !== null ? profile : undefined,
    locale: profile !== undefined && locale !== null ? locale : undefined
  }
}

const INSERT_BATCH = `
WITH ev AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS e(
    at bigint, event text, count integer, key text, systems text[], duration_ms integer, prompt_tokens integer,
    completion_tokens integer, model text, user_id text, profile jsonb, locale text)
), ins AS (
  INSERT INTO analytics_events (at, event, count, key, systems, duration_ms, prompt_tokens, completion_tokens, model, user_id)
  SELECT at, event, GREATEST(count, 1), key, COALESCE(systems, '{}'), duration_ms, prompt_tokens, completion_tokens, model, user_id FROM ev
  RETURNING 1
), uk AS (
  INSERT INTO user_keys AS u (user_id, key, first_seen, last_seen)
  SELECT user_id, key, min(at), max(at) FROM ev WHERE user_id IS NOT NULL
  GROUP BY user_id, key ORDER BY user_id, key
  ON CONFLICT (user_id, key) DO UPDATE SET
    first_seen = LEAST(u.first_seen, excluded.first_seen),
    last_seen = GREATEST(u.last_seen, excluded.last_seen)
  RETURNING 1
), rp AS (
  INSERT INTO requested_profiles AS r (key, profile, locale, last_seen)
  SELECT DISTINCT ON (key) key, profile, locale, at FROM ev
  WHERE profile IS NOT NULL AND locale IS NOT NULL
  ORDER BY key, at DESC
  ON CONFLICT (key) DO UPDATE SET profile = excluded.profile, locale = excluded.locale, last_seen = excluded.last_seen
  WHERE r.last_seen <= excluded.last_seen
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS rows, (SELECT count(*) FROM uk) AS user_keys, (SELECT count(*) FROM rp) AS profiles`

/** Analytics events, the per-user key index and the profiles pre-warm rebuilds from. */
export class AnalyticsRepository {
  readonly #db: Database

  constructor (db: Database) {
    this.#db = db
  }

  /**
   * Writes a batch in one statement (one jsonb parameter unpacked by
   * jsonb_to_recordset, so any batch size is one round trip and atomic): the
   * events, the user_keys of events with a userId, and the requested_profiles
   * of events with a profile and a locale (the latest per key wins). An
   * event with a `count` is one row standing for that many requests.
   * Resolves with the number of rows written.
   */
  async insertBatch (events: readonly AnalyticsEvent[]): Promise<number> {
    if (events.length === 0) return 0
    const rows = await this.#db.query<{ rows: number | string }>(INSERT_BATCH, [JSON.stringify(events.map(toRecord))])
    return Number(rows[0]?.rows ?? 0)
  }

  /**
   * Deletes analytics rows older than `beforeMs`, at most `batchSize` per
   * statement so no statement holds its locks long; returns how many went.
   * Only analytics_events: user_keys (the per-user index, for deletion
   * requests) and requested_profiles (pre-warm) are kept.
   */
  async deleteBefore (beforeMs: number, batchSize = 10_000): Promise<number> {
    let total = 0
    for (;;) {
      const [row] = await this.#db.query<{ n: number | string }>(
        `WITH d AS (DELETE FROM analytics_events WHERE id IN (
           SELECT id FROM analytics_events WHERE at < $1 ORDER BY at LIMIT $2) RETURNING 1)
         SELECT count(*) AS n FROM d`, [Math.floor(beforeMs), batchSize])
      const n = Number(row?.n ?? 0)
      total += n
      if (n < batchSize) return total
    }
  }

  /** Figures over the events at or after `sinceMs` (each row counts for its `count`). */
  async summary (sinceMs: number): Promise<AnalyticsSummary> {
    const [totals] = await this.#db.query<Record<string, number | string | null>>(
      `SELECT
         COALESCE(sum(count) FILTER (WHERE event NOT IN ('generation', 'repaid')), 0) AS total_requests,
         COALESCE(sum(count) FILTER (WHERE event IN ('hit', 'stale', 'durable')), 0) AS cache_hits,
         COALESCE(sum(count) FILTER (WHERE event = 'miss'), 0) AS cache_misses,
         COALESCE(sum(count) FILTER (WHERE event = 'fallback'), 0) AS fallbacks,
         COALESCE(sum(count) FILTER (WHERE event = 'generation'), 0) AS generations,
         COALESCE(sum(count) FILTER (WHERE event = 'repaid'), 0) AS repaid_generations,
         avg(duration_ms) FILTER (WHERE event = 'generation') AS avg_generation_ms,
         COALESCE(sum(prompt_tokens) FILTER (WHERE event = 'generation'), 0) AS prompt_tokens,
         COALESCE(sum(completion_tokens) FILTER (WHERE event = 'generation'), 0) AS completion_tokens
       FROM analytics_events WHERE at >= $1`, [Math.floor(sinceMs)])
    const models = await this.#db.query<Record<string, number | string>>(
      `SELECT COALESCE(model, 'unknown') AS model, sum(count) AS generations,
         COALESCE(sum(prompt_tokens), 0) AS prompt_tokens, COALESCE(sum(completion_tokens), 0) AS completion_tokens
       FROM analytics_events WHERE at >= $1 AND event = 'generation'
       GROUP BY 1 ORDER BY generations DESC, model`, [Math.floor(sinceMs)])
    return {
      totalRequests: Number(totals.total_requests ?? 0),
      cacheHits: Number(totals.cache_hits ?? 0),
      cacheMisses: Number(totals.cache_misses ?? 0),
      fallbacks: Number(totals.fallbacks ?? 0),
      generations: Number(totals.generations ?? 0),
      repaidGenerations: Number(totals.repaid_generations ?? 0),
      avgGenerationTimeMs: Number(totals.avg_generation_ms ?? 0),
      promptTokens: Number(totals.prompt_tokens ?? 0),
      completionTokens: Number(totals.completion_tokens ?? 0),
      byModel: models.map(m => ({
        model: String(m.model),
        promptTokens: Number(m.prompt_tokens),
        completionTokens: Number(m.completion_tokens),
        generations: Number(m.generations)
      }))
    }
  }

  /**
   * Requests per system since `sinceMs`, counting each request once, for its
   * most prominent system (`systems[1]`); most requested first, then by name.
   */
  async topSystems (sinceMs: number, limit: number): Promise<SystemCount[]> {
    const rows = await this.#db.query<{ system: string, count: number | string }>(
      `SELECT systems[1] AS system, sum(count) AS count FROM analytics_events
       WHERE at >= $1 AND event NOT IN ('generation', 'repaid') AND cardinality(systems) > 0
       GROUP BY 1 ORDER BY count DESC, system LIMIT $2`, [Math.floor(sinceMs), clampLimit(limit)])
    return rows.map(r => ({ system: r.system, count: Number(r.count) }))
  }

  /**
   * The most requested keys since `sinceMs` that can be rebuilt (those with a
   * row in requested_profiles), with their profile and locale: pre-warm's list.
   */
  async topKeys (sinceMs: number, limit: number): Promise<KeyCount[]> {
    const rows = await this.#db.query<{ key: string, count: number | string, profile: object, locale: string }>(
      `SELECT e.key, e.count, r.profile, r.locale
       FROM (SELECT key, sum(count) AS count FROM analytics_events
             WHERE at >= $1 AND event NOT IN ('generation', 'repaid') GROUP BY key) e
       JOIN requested_profiles r ON r.key = e.key
       ORDER BY e.count DESC, e.key LIMIT $2`, [Math.floor(sinceMs), clampLimit(limit)])
    return rows.map(r => ({ key: r.key, count: Number(r.count), profile: r.profile, locale: r.locale }))
  }

  /**
   * Deletes the user's analytics rows and their user_keys rows, nothing else
   * (cached narratives and requested_profiles are keyed by profile, not user).
   * Events still buffered in memory are not here: see AnalyticsBuffer.discardUser.
   */
  async deleteUser (userId: string): Promise<{ analyticsRows: number, indexRows: number }> {
    const id = exactText(userId, MAX_USER)
    // An id PostgreSQL cannot hold as it is was never stored: there is nothing of it to delete (and nobody else's).
    if (id === null) return { analyticsRows: 0, indexRows: 0 }
    const [row] = await this.#db.query<{ analytics_rows: number | string, index_rows: number | string }>(
      `WITH a AS (DELETE FROM analytics_events WHERE user_id = $1 RETURNING 1),
            k AS (DELETE FROM user_keys WHERE user_id = $1 RETURNING 1)
       SELECT (SELECT count(*) FROM a) AS analytics_rows, (SELECT count(*) FROM k) AS index_rows`, [id])
    return { analyticsRows: Number(row?.analytics_rows ?? 0), indexRows: Number(row?.index_rows ?? 0) }
  }

  /**
   * Minute by minute, from the minute holding `sinceMs` to the one holding
   * `untilMs` (every minute present, empty ones with zeros): requests by
   * status, refusals apart (the events under `refusedKey`), and the model
   * calls with their duration percentiles. Each row counts for its `count`.
   */
  async history (sinceMs: number, untilMs: number, refusedKey: string): Promise<MinuteBucket[]> {
    const from = Math.floor(sinceMs / MINUTE_MS) * MINUTE_MS
    const to = Math.floor(untilMs / MINUTE_MS) * MINUTE_MS
    const [counts, durations] = await Promise.all([
      this.#db.query<{ minute: number | string, event: string, refused: boolean, n: number | string }>(
        `SELECT (at / ${MINUTE_MS}) * ${MINUTE_MS} AS minute, event, key = $3 AS refused, sum(count) AS n
         FROM analytics_events WHERE at >= $1 AND at < $2
         GROUP BY 1, 2, 3`, [from, to + MINUTE_MS, refusedKey]),
      this.#db.query<{ minute: number | string, p50: number | string | null, p95: number | string | null }>(
        `SELECT (at / ${MINUTE_MS}) * ${MINUTE_MS} AS minute,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95
         FROM analytics_events WHERE at >= $1 AND at < $2 AND event = 'generation' AND duration_ms IS NOT NULL
         GROUP BY 1`, [from, to + MINUTE_MS])
    ])
    const buckets = new Map<number, MinuteBucket>()
    for (let at = from; at <= to; at += MINUTE_MS) {
      buckets.set(at, { at, hit: 0, stale: 0, durable: 0, miss: 0, fallback: 0, error: 0, refused: 0, generations: 0, generationP50Ms: null, generationP95Ms: null })
    }
    for (const r of counts) {
      const b = buckets.get(Number(r.minute))
      if (b === undefined) continue
      const n = Number(r.n)
      if (r.event === 'error') {
        if (r.refused) b.refused += n
        else b.error += n
      } else if (r.event === 'generation') b.generations += n
      else if (r.event === 'hit' || r.event === 'stale' || r.event === 'durable' || r.event === 'miss' || r.event === 'fallback') b[r.event] += n
    }
    for (const r of durations) {
      const b = buckets.get(Number(r.minute))
      if (b === undefined) continue
      b.generationP50Ms = r.p50 === null ? null : Math.round(Number(r.p50))
      b.generationP95Ms = r.p95 === null ? null : Math.round(Number(r.p95))
    }
    return [...buckets.values()]
  }

  /** The keys this user requested, sorted. */
  async keysOfUser (userId: string): Promise<string[]> {
    const id = exactText(userId, MAX_USER)
    if (id === null) return []
    const rows = await this.#db.query<{ key: string }>('SELECT key FROM user_keys WHERE user_id = $1 ORDER BY key', [id])
    return rows.map(r => r.key)
  }
}
