import type { Database } from './database.ts'

export interface Migration {
  /** Strictly increasing; never reuse or edit an applied one: add a new version. */
  version: number
  name: string
  sql: string
}

/**
 * The schema, in order. Times are bigint milliseconds since the epoch
 * throughout (as in CachedNarrative.meta and the cache versions).
 */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'durable tier, analytics, per-user index, requested profiles, audit log',
    sql: `
CREATE TABLE narratives (
  key        text PRIMARY KEY,
  engine     text NOT NULL,
  version    bigint NOT NULL,
  entry      jsonb NOT NULL,
  profile    jsonb,
  locale     text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE TABLE analytics_events (
  id                bigserial PRIMARY KEY,
  at                bigint NOT NULL,
  event             text NOT NULL CHECK (event IN ('hit', 'stale', 'miss', 'durable', 'generation', 'fallback', 'error')),
  key               text NOT NULL,
  systems           text[] NOT NULL DEFAULT '{}',
  duration_ms       integer,
  prompt_tokens     integer,
  completion_tokens integer,
  model             text,
  user_id           text
);
CREATE INDEX analytics_events_at_idx ON analytics_events (at);
CREATE INDEX analytics_events_user_id_idx ON analytics_events (user_id);

CREATE TABLE user_keys (
  user_id    text NOT NULL,
  key        text NOT NULL,
  first_seen bigint NOT NULL,
  last_seen  bigint NOT NULL,
  PRIMARY KEY (user_id, key)
);

CREATE TABLE requested_profiles (
  key       text PRIMARY KEY,
  profile   jsonb NOT NULL,
  locale    text NOT NULL,
  last_seen bigint NOT NULL
);

CREATE TABLE audit_log (
  id      bigserial PRIMARY KEY,
  at      bigint NOT NULL,
  actor   text,
  action  text NOT NULL,
  ip      text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
  status  integer NOT NULL,
  detail  text
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
`
  },
  {
    version: 2,
    name: 'analytics rows stand for count identical requests',
    sql: `
ALTER TABLE analytics_events ADD COLUMN count integer NOT NULL DEFAULT 1 CHECK (count >= 1);
`
  },
  {
    version: 3,
    name: 'build claims (a durable record of builds in flight), re-paid generations in analytics',
    // build_claims: one row per key being built, so a build outlives a Redis
    // that lost its lock (src/swr/build-claims.ts). Times on the database's
    // clock. 'repaid': a generation of a key that already had a durable row.
    sql: `
CREATE TABLE build_claims (
  key        text PRIMARY KEY,
  owner      text NOT NULL,
  claimed_at bigint NOT NULL,
  expires_at bigint NOT NULL
);

ALTER TABLE analytics_events DROP CONSTRAINT analytics_events_event_check;
ALTER TABLE analytics_events ADD CONSTRAINT analytics_events_event_check
  CHECK (event IN ('hit', 'stale', 'miss', 'durable', 'generation', 'repaid', 'fallback', 'error'));
`
  },
  {
    version: 4,
    name: 'API keys of /v1/chat/completions',
    // Only a SHA-256 of each secret is kept: the secret is shown once, when the key is made.
    sql: `
CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  tenant      text NOT NULL,
  secret_hash text NOT NULL UNIQUE,
  rate_limit  integer NOT NULL CHECK (rate_limit >= 0),
  monthly_budget_usd double precision CHECK (monthly_budget_usd >= 0),
  created_at  bigint NOT NULL,
  revoked_at  bigint
);

-- The durable tier of /v1/chat/completions: one row per key, newer version wins.
CREATE TABLE chat_entries (
  key        text PRIMARY KEY,
  version    bigint NOT NULL,
  entry      jsonb NOT NULL,
  updated_at bigint NOT NULL
);

-- Tenants an admin marked as sharing: their keys read and write one shared scope.
CREATE TABLE shared_tenants (
  tenant    text PRIMARY KEY,
  marked_at bigint NOT NULL
);

-- What each key's upstream calls cost, and what its answers from the cache
-- saved (the cost of the call that wrote the entry, once per answer), by
-- calendar month (UTC, 'YYYY-MM').
CREATE TABLE api_key_spend (
  key_id    text NOT NULL,
  month     text NOT NULL,
  usd       double precision NOT NULL DEFAULT 0,
  saved_usd double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, month)
);
`
  },
  {
    version: 5,
    name: 'API keys may carry the refresh right (Cache-Control: no-cache on POST /api/narrative)',
    sql: `
ALTER TABLE api_keys ADD COLUMN refresh boolean NOT NULL DEFAULT false;
`
  },
  {
    version: 6,
    name: 'build claims written without WAL (UNLOGGED): a claim is taken before every first build',
    // A claim lives no longer than the build it covers (src/swr/build-claims.ts),
    // and it is written on the miss path, before the model call: without WAL
    // its commit waits for no log flush. What UNLOGGED gives up is a claim
    // surviving a crash of PostgreSQL itself (the table is emptied on crash
    // recovery, and a replica promoted by failover starts with it empty): the
    // claims in flight then are lost as if they had expired, and the Redis
    // locks still stand between the instances unless Redis is lost at the
    // same moment, the limit the claims already state for a database that is down.
    sql: `
ALTER TABLE build_claims SET UNLOGGED;
`
  }
]

/** pg_advisory_xact_lock key: instances starting together migrate one after the other. */
export const MIGRATION_LOCK_KEY = 7_406_339_215_001

export interface MigrateOptions {
  migrations?: readonly Migration[]
  /** Statement timeout inside the migration transaction (PostgreSQL). Default 60000. */
  timeoutMs?: number
  now?: () => number
}

export interface MigrateResult {
  /** Versions applied by this call, in order (empty when already up to date). */
  applied: number[]
  /** The highest version in the database afterwards. */
  current: number
}

export class MigrationError extends Error {
  override readonly name: string = 'MigrationError'
  readonly code = 'NARR_DB_MIGRATION'
}

function checkOrder (list: readonly Migration[]): void {
  let previous = 0
  for (const m of list) {
    if (!Number.isSafeInteger(m.version) || m.version <= previous) {
      throw new MigrationError(`migration versions must be increasing positive integers: ${m.version} after ${previous}`)
    }
    previous = m.version
  }
}

/**
 * Applies the missing migrations, all in one transaction that first takes an
 * advisory transaction lock (so two instances starting at once queue up, and
 * the second finds nothing left to do). Idempotent.
 */
export async function migrate (db: Database, opts: MigrateOptions = {}): Promise<MigrateResult> {
  const list = opts.migrations ?? migrations
  checkOrder(list)
  const now = opts.now ?? Date.now
  return await db.transaction(async tx => {
    // The lock comes first: even CREATE TABLE IF NOT EXISTS races when run concurrently.
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY])
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    bigint PRIMARY KEY,
      name       text NOT NULL,
      applied_at bigint NOT NULL
    )`)
    const rows = await tx.query<{ version: number | string }>('SELECT version FROM schema_migrations ORDER BY version')
    const done = new Set(rows.map(r => Number(r.version)))
    const applied: number[] = []
    for (const m of list) {
      if (done.has(m.version)) continue
      try {
        await tx.query(m.sql)
      } catch (err) {
        throw new MigrationError(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err })
      }
      await tx.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, now()])
      applied.push(m.version)
      done.add(m.version)
    }
    return { applied, current: Math.max(0, ...done) }
  }, { timeoutMs: opts.timeoutMs ?? 60_000 })
}
