import type { Database } from './database.ts'
import { clampLimit, cleanText, optionalInt, optionalText } from './sanitize.ts'

export interface AuditInput {
  /** ms since the epoch; default now. */
  at?: number
  /** The JWT `sub`, when there was a valid token. */
  actor?: string | null
  /** e.g. 'GET /api/narrative/stats' */
  action: string
  ip: string
  outcome: 'allowed' | 'denied'
  /** The HTTP status answered. */
  status: number
  detail?: string | null
}

export interface AuditEntry {
  id: number
  at: number
  actor: string | null
  action: string
  ip: string
  outcome: 'allowed' | 'denied'
  status: number
  detail: string | null
}

/** Entries waiting for their turn at most: past it (a database down for long), new ones are refused. */
export const AUDIT_MAX_WAITING = 1000

/** The admin audit log. */
export class AuditRepository {
  readonly #db: Database
  readonly #now: () => number
  readonly #maxWaiting: number
  /** The write before the next one: entries are written one at a time, in order. */
  #last: Promise<void> = Promise.resolve()
  #waiting = 0

  constructor (db: Database, opts: { now?: () => number, maxWaiting?: number } = {}) {
    this.#db = db
    this.#now = opts.now ?? Date.now
    this.#maxWaiting = opts.maxWaiting ?? AUDIT_MAX_WAITING
  }

  /**
   * Appends one entry; resolves with its id. Entries are written one at a
   * time, in the order insert() was called (the order the calls were
   * answered): concurrent INSERTs on a pool's connections could land, and be
   * numbered, out of order, and the log is read newest first by id. While
   * the database is down each write waits out its timeout: at most
   * `maxWaiting` entries wait their turn, and further ones are refused (the
   * caller logs them), so memory stays bounded however long the outage.
   */
  async insert (entry: AuditInput): Promise<number> {
    if (entry.outcome !== 'allowed' && entry.outcome !== 'denied') throw new TypeError(`outcome must be 'allowed' or 'denied', got ${String(entry.outcome)}`)
    if (this.#waiting >= this.#maxWaiting) throw new Error(`audit log: ${this.#maxWaiting} entries already wait for the database; this one is not written`)
    const at = Math.round(entry.at ?? this.#now())
    this.#waiting++
    const written = this.#last.then(async () => await this.#write(entry, at)).finally(() => { this.#waiting-- })
    this.#last = written.then(() => {}, () => {})
    return await written
  }

  async #write (entry: AuditInput, at: number): Promise<number> {
    const [row] = await this.#db.query<{ id: number | string }>(
      `INSERT INTO audit_log (at, actor, action, ip, outcome, status, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [
        at,
        optionalText(entry.actor, 256),
        cleanText(entry.action, 300),
        cleanText(entry.ip, 100),
        entry.outcome,
        optionalInt(entry.status) ?? 0,
        optionalText(entry.detail, 2000)
      ])
    return Number(row.id)
  }

  /** The latest entries, newest first (1 to 1000). */
  async recent (limit = 100): Promise<AuditEntry[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      'SELECT id, at, actor, action, ip, outcome, status, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT $1', [clampLimit(limit)])
    return rows.map(toEntry)
  }

  /**
   * One page of the log, newest first by id (the order entries were
   * written): at most `limit` entries (1 to 1000) with an id below `before`
   * when given. The next page is the one before the last id returned.
   */
  async page (limit = 50, before?: number): Promise<AuditEntry[]> {
    const cursor = before === undefined || !Number.isSafeInteger(before) ? null : before
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT id, at, actor, action, ip, outcome, status, detail FROM audit_log
       WHERE $2::bigint IS NULL OR id < $2::bigint ORDER BY id DESC LIMIT $1`, [clampLimit(limit), cursor])
    return rows.map(toEntry)
  }
}

function toEntry (r: Record<string, unknown>): AuditEntry {
  return {
    id: Number(r.id),
    at: Number(r.at),
    actor: (r.actor as string | null) ?? null,
    action: r.action as string,
    ip: r.ip as string,
    outcome: r.outcome as 'allowed' | 'denied',
    status: Number(r.status),
    detail: (r.detail as string | null) ?? null
  }
}
