import { hash, randomBytes } from 'node:crypto'
import type { Database } from './database.ts'

export interface ApiKey {
  id: string
  name: string
  /** Whose cache entries the key reads and writes. */
  tenant: string
  /** True when an admin marked the key's tenant as sharing: its entries are in the shared scope. */
  sharing: boolean
  /** Model calls a minute the key may cause (0: no limit of its own). */
  rateLimit: number
  /** Dollars a calendar month (UTC) its upstream calls may cost; null: no budget. */
  monthlyBudgetUsd: number | null
  /** May ask for a new narrative on demand (Cache-Control: no-cache on POST /api/narrative). */
  refresh: boolean
  createdAt: number
  revokedAt: number | null
}

/** The SHA-256 of a secret, as stored. */
export function secretHash (secret: string): string {
  return hash('sha256', secret)
}

interface Row { id: string, name: string, tenant: string, sharing?: boolean | null, rate_limit: number | string, monthly_budget_usd: number | string | null, refresh?: boolean | null, created_at: number | string, revoked_at: number | string | null }

function toKey (row: Row): ApiKey {
  return { id: row.id, name: row.name, tenant: row.tenant, sharing: row.sharing === true, rateLimit: Number(row.rate_limit), monthlyBudgetUsd: row.monthly_budget_usd === null ? null : Number(row.monthly_budget_usd), refresh: row.refresh === true, createdAt: Number(row.created_at), revokedAt: row.revoked_at === null ? null : Number(row.revoked_at) }
}

/** API keys for /v1/chat/completions: the secret is returned once by create(), only its hash is kept. */
export class ApiKeysRepository {
  readonly #db: Database
  readonly #now: () => number

  constructor (db: Database, opts: { now?: () => number } = {}) {
    this.#db = db
    this.#now = opts.now ?? Date.now
  }

  async create (input: { name: string, tenant?: string, rateLimit: number, monthlyBudgetUsd?: number, refresh?: boolean }): Promise<{ key: ApiKey, secret: string }> {
    const id = `key_${randomBytes(9).toString('base64url')}`
    const secret = `nck_${randomBytes(32).toString('base64url')}`
    // By default a tenant of its own: no other key reads its entries.
    const tenant = input.tenant ?? id
    const rows = await this.#db.query<Row>(
      'INSERT INTO api_keys (id, name, tenant, secret_hash, rate_limit, monthly_budget_usd, refresh, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *',
      [id, input.name, tenant, secretHash(secret), input.rateLimit, input.monthlyBudgetUsd ?? null, input.refresh === true, this.#now()])
    const shared = await this.#db.query<{ n: number | string }>('SELECT count(*) AS n FROM shared_tenants WHERE tenant = $1', [tenant])
    return { key: toKey({ ...rows[0], sharing: Number(shared[0]?.n ?? 0) > 0 }), secret }
  }

  async list (): Promise<ApiKey[]> {
    return (await this.#db.query<Row>('SELECT k.*, s.tenant IS NOT NULL AS sharing FROM api_keys k LEFT JOIN shared_tenants s ON s.tenant = k.tenant ORDER BY k.created_at')).map(toKey)
  }

  /** The live key whose secret this is, or null. */
  async bySecret (secret: string): Promise<ApiKey | null> {
    const rows = await this.#db.query<Row>(`SELECT k.*, s.tenant IS NOT NULL AS sharing FROM api_keys k LEFT JOIN shared_tenants s ON s.tenant = k.tenant
       WHERE k.secret_hash = $1 AND k.revoked_at IS NULL`, [secretHash(secret)])
    return rows.length === 0 ? null : toKey(rows[0])
  }

  /** Revokes a key; false when there is no live key of that id. */
  async revoke (id: string): Promise<boolean> {
    const rows = await this.#db.query<{ id: string }>('UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id', [id, this.#now()])
    return rows.length > 0
  }

  /** Marks a tenant as sharing (its keys read and write the shared scope), or not. */
  async setSharing (tenant: string, sharing: boolean): Promise<void> {
    if (sharing) await this.#db.query('INSERT INTO shared_tenants (tenant, marked_at) VALUES ($1, $2) ON CONFLICT (tenant) DO NOTHING', [tenant, this.#now()])
    else await this.#db.query('DELETE FROM shared_tenants WHERE tenant = $1', [tenant])
  }

  /** Adds what an upstream call cost to the key's month. */
  async addSpend (keyId: string, month: string, usd: number): Promise<void> {
    await this.#db.query(
      'INSERT INTO api_key_spend (key_id, month, usd) VALUES ($1, $2, $3) ON CONFLICT (key_id, month) DO UPDATE SET usd = api_key_spend.usd + excluded.usd',
      [keyId, month, usd])
  }

  /** Adds what answers from the cache saved the key this month (their entries' cost). */
  async addSaved (keyId: string, month: string, usd: number): Promise<void> {
    await this.#db.query(
      'INSERT INTO api_key_spend (key_id, month, saved_usd) VALUES ($1, $2, $3) ON CONFLICT (key_id, month) DO UPDATE SET saved_usd = api_key_spend.saved_usd + excluded.saved_usd',
      [keyId, month, usd])
  }

  /** Spent and saved by every key in a month. */
  async ledger (month: string): Promise<Map<string, { spentUsd: number, savedUsd: number }>> {
    const rows = await this.#db.query<{ key_id: string, usd: number | string, saved_usd: number | string }>('SELECT key_id, usd, saved_usd FROM api_key_spend WHERE month = $1', [month])
    return new Map(rows.map(r => [r.key_id, { spentUsd: Number(r.usd), savedUsd: Number(r.saved_usd) }]))
  }

  /** What the key's upstream calls cost this month so far. */
  async spent (keyId: string, month: string): Promise<number> {
    const rows = await this.#db.query<{ usd: number | string }>('SELECT usd FROM api_key_spend WHERE key_id = $1 AND month = $2', [keyId, month])
    return rows.length === 0 ? 0 : Number(rows[0].usd)
  }
}

/** The calendar month (UTC) a moment falls in, as spend is kept: 'YYYY-MM'. */
export function monthOf (ms: number): string {
  return new Date(ms).toISOString().slice(0, 7)
}
