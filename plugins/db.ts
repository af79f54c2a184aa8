import fp from 'fastify-plugin'
import { AnalyticsBuffer, type AnalyticsBufferOptions } from '../src/analytics/buffer.js'
import { AnalyticsRetention } from '../src/analytics/retention.js'
import { AnalyticsRepository } from '../src/db/analytics-repository.js'
import { AuditRepository } from '../src/db/audit-repository.js'
import { DeferredDatabase, openDatabase, type Database, type PostgresOptions } from '../src/db/database.js'
import { migrate } from '../src/db/migrations.js'
import { NarrativesRepository } from '../src/db/narratives-repository.js'

export type DbState = 'up' | 'down' | 'embedded'

export interface Db {
  /** Rejects with DatabaseUnavailableError (at once) while the database could not be opened yet. */
  database: Database
  narratives: NarrativesRepository
  analytics: AnalyticsRepository
  audit: AuditRepository
  buffer: AnalyticsBuffer
  /** Deletes analytics older than ANALYTICS_RETENTION_DAYS, hourly. */
  retention: AnalyticsRetention
  /** 'embedded' (PGlite) or 'up' (PostgreSQL) when open, migrated and answering within pingTimeoutMs; else 'down'. */
  state(): Promise<DbState>
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
  /**
   * Start-up waits this long for the first open + migrate, then goes on and
   * lets it finish in the background (a first PGlite open takes seconds, and
   * Fastify's plugin timeout is 10 s). Default 5000.
   */
  startupWaitMs?: number
  /** When the retention pass first runs, and how often after. Default 10 s, then hourly. */
  retention?: { firstDelayMs?: number, intervalMs?: number }
}

async function within<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Opens the database and migrates it. A database that is down at start-up
 * does not stop the server: the plugin logs a warning, decorates anyway
 * (queries reject at once until it is open) and keeps trying in the
 * background, with backoff, until open + migrate succeed.
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
      if (!database.attached) {
        const opened = opts.database ?? await openDatabase({
          databaseUrl,
          dataDir,
          postgres: { ...opts.postgres, onError: opts.postgres?.onError ?? onError }
        })
        if (closed) {
          if (opts.database === undefined) await opened.close()
          return false
        }
        database.attach(opened)
      }
      const { applied, current } = await migrate(database)
      migrated = true
      log.info({ database: kind, schemaVersion: current, applied }, applied.length > 0 ? 'database migrated' : 'database schema up to date')
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

  const first = run().then(ok => { if (!ok) retryLater() })
  let startupTimer: NodeJS.Timeout | undefined
  const stillOpening = new Promise<boolean>(resolve => { startupTimer = setTimeout(() => resolve(true), opts.startupWaitMs ?? 5000) })
  if (await Promise.race([first.then(() => false), stillOpening])) {
    log.info({ database: kind }, 'database still opening: going on, it finishes in the background')
  }
  clearTimeout(startupTimer)

  const narratives = new NarrativesRepository(database)
  const analytics = new AnalyticsRepository(database)
  const audit = new AuditRepository(database)
  const buffer = new AnalyticsBuffer({ ...opts.buffer, repository: analytics, logger: log })
  const retention = new AnalyticsRetention({
    retentionMs: fastify.config.analyticsRetentionMs,
    intervalMs: opts.retention?.intervalMs,
    // Before the schema is in place there is nothing to delete.
    deleteBefore: async before => migrated ? await analytics.deleteBefore(before) : 0,
    logger: log
  })
  retention.start(opts.retention?.firstDelayMs)

  const state = async (): Promise<DbState> => {
    if (!database.attached || !migrated || closed) return 'down'
    try {
      await within(database.ping(), pingTimeoutMs)
      return kind === 'pglite' ? 'embedded' : 'up'
    } catch {
      return 'down'
    }
  }

  fastify.decorate('db', { database, narratives, analytics, audit, buffer, retention, state })

  fastify.addHook('onClose', async () => {
    closed = true
    if (timer !== undefined) clearTimeout(timer)
    await attempt?.catch(() => {})
    await retention.stop()
    await buffer.close()
    if (opts.database === undefined) await database.close()
  })
}, { name: 'db', dependencies: ['config'] })
