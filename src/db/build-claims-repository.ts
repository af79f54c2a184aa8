import type { BuildClaimStore } from '../swr/build-claims.ts'
import type { Database } from './database.ts'

/** Now on the database's clock, in ms: every instance measures claims on the same one. */
const DB_NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint'

/** The owner of a failed build's marker: no real owner (instance/token UUIDs) looks like it. */
const FAILED = '!failed'

/**
 * Where the rows an engine builds are kept, for a claim's `built`: the
 * narratives of one engine version, or the chat completions. A claim that
 * looked in another engine's table would never see its own builds land, and a
 * waiter that took the claim once the builder released it would pay again.
 */
export type BuiltRows = 'narratives' | 'chat_entries'

const BUILT: Record<BuiltRows, string> = {
  narratives: "EXISTS (SELECT 1 FROM narratives WHERE key = $1 AND entry->>'version' = $4)",
  // A chat row has no engine version: any row is the completion ($4 is typed, not compared).
  chat_entries: 'EXISTS (SELECT 1 FROM chat_entries WHERE key = $1 AND $4::text IS NOT NULL)'
}

/**
 * Build claims in PostgreSQL (table build_claims, migration 3): one row per
 * key being built, with its owner and expiry. Taken with INSERT … ON
 * CONFLICT: a fresh key is inserted, an expired claim (its owner died) is
 * taken over, a live one is left alone. A failed build leaves a short-lived
 * marker in its place (fail()): waiters see it, a new request takes it over.
 */
export class BuildClaimsRepository implements BuildClaimStore {
  readonly #db: Database
  readonly #built: string
  /** The claim statement's name (see Database.query): one per text. */
  readonly #claimStatement: string

  constructor (db: Database, builtRows: BuiltRows = 'narratives') {
    this.#db = db
    this.#built = BUILT[builtRows]
    this.#claimStatement = `build-claim-${builtRows}`
  }

  async claim (key: string, owner: string, ttlMs: number, entryVersion: string, takeFailed: boolean): Promise<{ won: boolean, built: boolean, failed: boolean }> {
    if (!(Number.isFinite(ttlMs) && ttlMs > 0)) throw new TypeError(`ttlMs must be a positive number of ms, got ${ttlMs}`)
    // One round trip: the claim (not taken when the row is there: nothing to
    // build, and nothing to release), whether the row is already there and
    // whether a failed build's marker was (both read in the statement's
    // snapshot: as they were before it began), the narrative written by this
    // engine version (an older one's row is rebuilt, not served), or the chat completion.
    const rows = await this.#db.query<{ won: boolean, built: boolean, failed: boolean }>(
      `WITH taken AS (
         INSERT INTO build_claims AS c (key, owner, claimed_at, expires_at)
         SELECT $1, $2, ${DB_NOW_MS}, ${DB_NOW_MS} + $3 WHERE NOT ${this.#built}
         ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, claimed_at = excluded.claimed_at, expires_at = excluded.expires_at
         WHERE c.expires_at <= excluded.claimed_at OR c.owner = excluded.owner OR (c.owner = '${FAILED}' AND $5::boolean)
         RETURNING 1
       )
       SELECT EXISTS (SELECT 1 FROM taken) AS won,
              ${this.#built} AS built,
              EXISTS (SELECT 1 FROM build_claims WHERE key = $1 AND owner = '${FAILED}' AND expires_at > ${DB_NOW_MS}) AS failed`,
      [key, owner, Math.ceil(ttlMs), entryVersion, takeFailed], this.#claimStatement)
    return { won: rows[0]?.won === true, built: rows[0]?.built === true, failed: rows[0]?.failed === true }
  }

  async fail (key: string, owner: string, markerMs: number): Promise<void> {
    if (!(Number.isFinite(markerMs) && markerMs > 0)) throw new TypeError(`markerMs must be a positive number of ms, got ${markerMs}`)
    await this.#db.query(`UPDATE build_claims SET owner = '${FAILED}', expires_at = ${DB_NOW_MS} + $3 WHERE key = $1 AND owner = $2`, [key, owner, Math.ceil(markerMs)])
  }

  async release (key: string, owner: string): Promise<void> {
    await this.#db.query('DELETE FROM build_claims WHERE key = $1 AND owner = $2', [key, owner], 'build-claim-release')
  }

  /** Claims whose owner has not released them and that have not expired, failed builds' markers aside (for the admin and tests). */
  async live (): Promise<number> {
    const rows = await this.#db.query<{ n: number | string }>(`SELECT count(*) AS n FROM build_claims WHERE expires_at > ${DB_NOW_MS} AND owner <> '${FAILED}'`)
    return Number(rows[0]?.n ?? 0)
  }
}
