import fp from 'fastify-plugin'
import { AnalyticsBuffer, type AnalyticsBufferOptions } from '../src/analytics/buffer.ts'
import { AnalyticsRetention } from '../src/analytics/retention.ts'
import { AnalyticsRepository } from '../src/db/analytics-repository.ts'
import { AuditRepository } from '../src/db/audit-repository.ts'
import { DeferredDatabase, openDatabase, type Database, type PostgresOptions } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { NarrativesRepository } from '../src/db/narratives-repository.ts'
import { withTimeout } from '../src/timeout.ts'

/** 'starting' while the first open + migrate is under way; 'down' once an attempt failed (retried in the background). */
export type DbState = 'up' | 'down' | 'embedded' | 'starting'

export interface Db {
  /** Rejects with DatabaseUnavailableError (at once) while the database could not be opened yet. */
  database: Database
  narratives: NarrativesRepository
  analytics: AnalyticsRepository
  audit: AuditRepository
  buffer: AnalyticsBuffer
  /** Deletes analytics older than ANALYTICS_RETENTION_DAYS, hourly. */
  retention: AnalyticsRetention
  /** 'embedded' (PGlite) or 'up' (PostgreSQL) when open, migrated and answering within pingTimeoutMs; 'starting' during the first attempt; else 'down'. */
  state(): Promise<DbState>
  /** True once the database is open and migrated (and not closed): until then the durable tier is skipped and analytics wait in the buffer. */
  isOpen(): boolean
  /** Settles when the first open + migrate attempt ends, whatever its outcome (tests wait on it; start-up never does). */
  firstAttempt: Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** PostgreSQL (DATABASE_URL) or the embedded PGlite: durable tier, analytics, audit log. */
    db: Db
  }
}

export interface DbPluginOptions {
  /** A database to use instead of opening one (tests). The plugin migrates it but does not close it. */
  database?: Database
  /** Buffer settings (batch size, interval, bound). */
  buffer?: Omit<AnalyticsBufferOptions, 'repository' | 'logger'>
  postgres?: PostgresOptions
  /** Backoff of the background open + migrate retries: minMs doubling to maxMs, with jitter. Default 1000 to 30000. */
  retry?: { minMs?: number, maxMs?: number }
  /** state() gives a ping this long. Default 1000. */
  pingTimeoutMs?: number
  /** When the retention pass first runs, and how often after. Default 10 s, then hourly. */
  retention?: { firstDelayMs?: number, intervalMs?: number }
}

/**
 * Opens the database and migrates it in the background: start-up never waits
 * for it. A first PGlite open takes seconds (11 s of migrations under load
 * once failed the boot against Fastify's 10 s plugin timeout), and a
 * PostgreSQL that is down would hold it too. The plugin decorates at once;
 * queries reject at once (DatabaseUnavailableError) until the database is open
 * *and* migrated; meanwhile the durable tier is skipped, analytics wait in
 * their bounded buffer, and /ready says `database: starting` (then `down` if
 * an attempt failed). Failed attempts are retried with backoff until open +
 * migrate succeed.
 */
export default fp<DbPluginOptions>(async (fastify, opts) => {
  const { databaseUrl, dataDir } = fastify.config
  const kind = opts.database?.kind ?? (databaseUrl !== undefined && databaseUrl !== '' ? 'postgres' : 'pglite')
  const database = new DeferredDatabase(kind)
  const log = fastify.log
  const minMs = opts.retry?.minMs ?? 1000
  const maxMs = Math.max(minMs, opts.retry?.maxMs ?? 30_000)
  const pingTimeoutMs = opts.pingTimeoutMs ?? 1000

  let migrated = false
  let closed = false
  let firstDone = false
  /** Opened but not yet migrated: attached (visible to queries) only once migrated. */
  let opened: Database | undefined
  let failures = 0
  let timer: NodeJS.Timeout | undefined
  let attempt: Promise<boolean> | undefined

  let lastErrorLog = 0
  const onError = (err: Error): void => {
    // an idle connection dying (server restarted): log at most one every 10 s
    if (Date.now() - lastErrorLog < 10_000) return
    lastErrorLog = Date.now()
    log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'database connection error')
  }

  const connect = async (): Promise<boolean> => {
    try {
      opened ??= opts.database ?? await openDatabase({
        databaseUrl,
        dataDir,
        postgres: { ...opts.postgres, onError: opts.postgres?.onError ?? onError }
      })
      if (closed) return false
      // Migrated before it is attached: no request reads a table that is not there yet.
      const { applied, current } = await migrate(opened)
      if (closed) return false
      database.attach(opened)
      migrated = true
      log.info({ database: kind, schemaVersion: current, applied }, applied.length > 0 ? 'database migrated' : 'database schema up to date')
      // What was buffered while it opened is written now, not at the next tick.
      buffer.flush().catch(() => {})
      return true
    } catch (err) {
      log.warn({ database: kind, err: { message: (err as Error).message, code: (err as { code?: string }).code } },
        'database not available: serving without it, retrying in the background')
      return false
    }
  }

  const run = (): Promise<boolean> => {
    attempt = connect().finally(() => { attempt = undefined })
    return attempt
  }

  const retryLater = (): void => {
    if (closed) return
    const base = Math.min(maxMs, minMs * 2 ** Math.min(failures, 20))
    const delay = Math.round(base / 2 + Math.random() * base / 2)
    failures++
    timer = setTimeout(() => {
      timer = undefined
      run().then(ok => { if (!ok) retryLater() }, () => {})
    }, delay)
    timer.unref()
  }

  const isOpen = (): boolean => migrated && !closed
  const narratives = new NarrativesRepository(database)
  const analytics = new AnalyticsRepository(database)
  const audit = new AuditRepository(database)
  // Until the database is open, events are held (bounded), not written and dropped.
  const buffer = new AnalyticsBuffer({ ...opts.buffer, repository: analytics, logger: log, writable: isOpen })
  const retention = new AnalyticsRetention({
    retentionMs: fastify.config.analyticsRetentionMs,
    intervalMs: opts.retention?.intervalMs,
    // Before the schema is in place there is nothing to delete.
    deleteBefore: async before => migrated ? await analytics.deleteBefore(before) : 0,
    logger: log
  })
  retention.start(opts.retention?.firstDelayMs)

  log.info({ database: kind }, 'database opening in the background')
  const firstAttempt = run().then(ok => {
    firstDone = true
    if (!ok) retryLater()
  })

  const state = async (): Promise<DbState> => {
    if (closed) return 'down'
    if (!migrated) return firstDone ? 'down' : 'starting'
    try {
      await withTimeout(database.ping(), pingTimeoutMs)
      return kind === 'pglite' ? 'embedded' : 'up'
    } catch {
      return 'down'
    }
  }

  fastify.decorate('db', { database, narratives, analytics, audit, buffer, retention, state, isOpen, firstAttempt })
  fastify.metrics.provide({ analytics: () => buffer.counters })

  fastify.addHook('onClose', async () => {
    closed = true
    if (timer !== undefined) clearTimeout(timer)
    await attempt?.catch(() => {})
    await retention.stop()
    await buffer.close()
    // Ours, attached or not (opened but never migrated); an injected one is the caller's.
    if (opts.database === undefined) await opened?.close()
  })
}, { name: 'db', dependencies: ['config', 'metrics'] })
