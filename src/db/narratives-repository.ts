import { TypeCompiler } from '@sinclair/typebox/compiler'
import { CachedNarrativeSchema, type CachedNarrative } from '../narrative/codec.ts'
import type { Database } from './database.ts'
import { cleanJson, cleanText, optionalText } from './sanitize.ts'

const checkShape = TypeCompiler.Compile(CachedNarrativeSchema)

export interface DurableNarrative {
  entry: CachedNarrative
  /** The build-start ms the entry was written with (newer wins). */
  version: number
}

/** The durable tier: one row per cache key, newer version wins. */
export class NarrativesRepository {
  readonly #db: Database
  readonly #now: () => number

  constructor (db: Database, opts: { now?: () => number } = {}) {
    this.#db = db
    this.#now = opts.now ?? Date.now
  }

  /**
   * Writes the entry unless the row already holds a version at least as new
   * (so it is idempotent, and a late builder never replaces a later one).
   * `profile`/`locale` are the request's, kept to rebuild the entry; a null
   * keeps what the row had. Resolves true when it wrote.
   */
  async upsert (key: string, entry: CachedNarrative, version: number, profile: object | null, locale: string | null): Promise<boolean> {
    return (await this.write(key, entry, version, profile, locale)).written
  }

  /**
   * upsert(), and `existed`: the row held an entry of the same engine version
   * before this write (read in the statement's snapshot), so the narrative had
   * been paid for already. Two first writes racing within one statement's
   * time may both see no row; that under-counts, never over-counts.
   */
  async write (key: string, entry: CachedNarrative, version: number, profile: object | null, locale: string | null): Promise<{ written: boolean, existed: boolean }> {
    if (!Number.isFinite(version) || version < 0) throw new TypeError(`version must be a non-negative number of ms, got ${version}`)
    const now = this.#now()
    const rows = await this.#db.query<{ written: number | string, existed: boolean }>(
      `WITH prior AS (SELECT 1 FROM narratives WHERE key = $1 AND entry->>'version' = $8),
       w AS (
       INSERT INTO narratives AS n (key, engine, version, entry, profile, locale, created_at, updated_at)
       VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $7)
       ON CONFLICT (key) DO UPDATE SET
         engine = excluded.engine,
         version = excluded.version,
         entry = excluded.entry,
         profile = COALESCE(excluded.profile, n.profile),
         locale = COALESCE(excluded.locale, n.locale),
         updated_at = excluded.updated_at
       WHERE n.version < excluded.version
       RETURNING 1)
       SELECT (SELECT count(*) FROM w) AS written, EXISTS (SELECT 1 FROM prior) AS existed`,
      [
        key,
        cleanText(entry.engine, 200),
        Math.floor(version),
        JSON.stringify(cleanJson(entry)),
        profile === null || profile === undefined ? null : JSON.stringify(cleanJson(profile)),
        optionalText(locale, 100),
        now,
        entry.version
      ], 'narrative-write')
    return { written: Number(rows[0]?.written ?? 0) > 0, existed: rows[0]?.existed === true }
  }

  /**
   * The stored entry and its version, or null. A row whose entry no longer
   * has the CachedNarrative shape counts as missing (a newer write replaces it).
   */
  async get (key: string): Promise<DurableNarrative | null> {
    const rows = await this.#db.query<{ entry: unknown, version: number | string }>(
      'SELECT entry, version FROM narratives WHERE key = $1', [key], 'narrative-get')
    if (rows.length === 0) return null
    const { entry, version } = rows[0]
    if (!checkShape.Check(entry)) return null
    return { entry, version: Number(version) }
  }

  /** Deletes these keys; resolves with how many rows went. */
  async deleteByKeys (keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0
    const rows = await this.#db.query<{ n: number | string }>(
      'WITH d AS (DELETE FROM narratives WHERE key = ANY($1::text[]) RETURNING 1) SELECT count(*) AS n FROM d', [[...keys]])
    return Number(rows[0]?.n ?? 0)
  }

  /**
   * Deletes the keys matching a Redis-style glob (`*`, `?`, `\` escapes the
   * next character; `[...]` classes are not supported and match literally).
   * For cache invalidation by pattern, so the durable tier does not bring
   * back what was invalidated.
   */
  async deleteMatching (pattern: string): Promise<number> {
    const rows = await this.#db.query<{ n: number | string }>(
      "WITH d AS (DELETE FROM narratives WHERE key LIKE $1 ESCAPE '\\' RETURNING 1) SELECT count(*) AS n FROM d", [globToLike(pattern)])
    return Number(rows[0]?.n ?? 0)
  }

  async count (): Promise<number> {
    const rows = await this.#db.query<{ n: number | string }>('SELECT count(*) AS n FROM narratives')
    return Number(rows[0]?.n ?? 0)
  }
}

/** Redis glob to SQL LIKE (escape character `\`). */
export function globToLike (pattern: string): string {
  let out = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[++i]
      out += next === '%' || next === '_' || next === '\\' ? '\\' + next : next
    } else if (c === '*') out += '%'
    else if (c === '?') out += '_'
    else if (c === '%' || c === '_' || c === '\\') out += '\\' + c
    else out += c
  }
  return out
}
