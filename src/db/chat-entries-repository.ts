import type { Database } from './database.ts'

/** A stored chat completion entry, as the chat adapter shapes it (src/chat/durable-chat.ts). */
export interface StoredChatEntry { chunks: string[], offsets?: number[], usd?: number, createdAt: number, refreshedAt: number, staleAfter: number }

/** The durable tier of /v1/chat/completions: one row per key, newer version wins. */
export class ChatEntriesRepository {
  readonly #db: Database
  readonly #now: () => number

  constructor (db: Database, opts: { now?: () => number } = {}) {
    this.#db = db
    this.#now = opts.now ?? Date.now
  }

  async get (key: string): Promise<{ entry: unknown, version: number } | null> {
    const rows = await this.#db.query<{ entry: unknown, version: number | string }>('SELECT entry, version FROM chat_entries WHERE key = $1', [key], 'chat-entry-get')
    return rows.length === 0 ? null : { entry: rows[0].entry, version: Number(rows[0].version) }
  }

  /** Writes unless a version at least as new is there; `existed`: a row was there before (the call was paid for already). */
  async write (key: string, entry: StoredChatEntry, version: number): Promise<{ written: boolean, existed: boolean }> {
    const rows = await this.#db.query<{ written: number | string, existed: boolean }>(
      `WITH prior AS (SELECT 1 FROM chat_entries WHERE key = $1),
       w AS (
         INSERT INTO chat_entries AS c (key, version, entry, updated_at) VALUES ($1, $2, $3::jsonb, $4)
         ON CONFLICT (key) DO UPDATE SET version = excluded.version, entry = excluded.entry, updated_at = excluded.updated_at
         WHERE c.version < excluded.version
         RETURNING 1)
       SELECT (SELECT count(*) FROM w) AS written, EXISTS (SELECT 1 FROM prior) AS existed`,
      [key, Math.floor(version), JSON.stringify(entry), this.#now()], 'chat-entry-write')
    return { written: Number(rows[0]?.written ?? 0) > 0, existed: rows[0]?.existed === true }
  }
}
