import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import pg from 'pg'
import { settledWithin } from '../timeout.ts'
import type { PGlite } from '@electric-sql/pglite'

/**
 * One interface over PostgreSQL (node-postgres pool) and the embedded PGlite.
 *
 * - `query` without params (or with `[]`) may hold several statements (simple
 *   protocol on both engines) and resolves with the rows of the last one.
 * - Types come back alike on both engines: bigint (int8) as a JS number,
 *   numeric as a string, json/jsonb parsed, arrays as JS arrays.
 * - Inside `transaction`, use only `tx`: on PGlite a call to the outer
 *   `query` from inside a transaction waits for that transaction (deadlock).
 * - `prepareAs` names a statement run on every miss: PostgreSQL parses and
 *   plans it once per connection rather than on every call (the build
 *   claim's statement went from 0.45 to 0.18 ms a round trip here). One
 *   name, one text, always. PGlite ignores it.
 */
export interface Database {
  readonly kind: 'postgres' | 'pglite'
  query<T = Record<string, unknown>>(text: string, params?: unknown[], prepareAs?: string): Promise<T[]>
  transaction<T>(fn: (tx: Pick<Database, 'query'>) => Promise<T>, opts?: TransactionOptions): Promise<T>
  /** Resolves when the database answers `SELECT 1`. */
  ping(): Promise<void>
  /** Idempotent; never hangs (PostgreSQL: bounded, then sockets are destroyed). */
  close(): Promise<void>
}

export interface TransactionOptions {
  /**
   * Statement and client-side query timeout for this transaction's statements
   * (PostgreSQL only), instead of the pool's: for migrations, which may
   * wait on a lock or build an index.
   */
  timeoutMs?: number
}

/** The database cannot be reached or opened: callers degrade, they do not fail. */
export class DatabaseUnavailableError extends Error {
  override readonly name: string = 'DatabaseUnavailableError'
  readonly code = 'NARR_DB_UNAVAILABLE'
}

export interface PostgresOptions {
  /** Server-side statement_timeout, and (plus a small margin) the client-side query timeout. Default 2000. */
  statementTimeoutMs?: number
  /** Time allowed to open a connection or to wait for a free one in the pool. Default 2000. */
  connectionTimeoutMs?: number
  /** Pool size. Default 10. */
  max?: number
  /** Idle connections are closed after this, down to `min`. Default 10000. */
  idleTimeoutMs?: number
  /**
   * Connections kept open however long they are idle. Default 2. Under a mostly
   * hit workload the pool would otherwise close every connection; when Redis is
   * then lost and every key misses at once, each statement first opens its
   * connection (several round trips). With a slow network, the likely cause of
   * bench scenario 4c paying 12 keys twice once: the database answered nothing
   * for a second, long enough to be taken for frozen, and builds went ahead
   * without their claims.
   */
  min?: number
  /** Checks the server answers before resolving (default true): a down server rejects in about connectionTimeoutMs. */
  verify?: boolean
  /** Errors of idle connections (server restarted, network cut): they must not crash the process. */
  onError?(err: Error): void
}

const PG_CLOSE_WAIT_MS = 2000
/** Client-side timeout = statement timeout + this, so a live server's own cancellation comes first. */
const CLIENT_TIMEOUT_MARGIN_MS = 250

// int8 as a JS number (as PGlite does), not a string: counts and ms timestamps fit easily.
const INT8_OID = 20
const int8Types = {
  getTypeParser (oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value)
    return pg.types.getTypeParser(oid, format as 'text')
  }
}

type PgResult = pg.QueryResult<Record<string, unknown>>
function lastRows<T> (res: PgResult | PgResult[]): T[] {
  const last = Array.isArray(res) ? res[res.length - 1] : res
  return (last?.rows ?? []) as T[]
}

/** Destroys a client's socket: the only way to drop a connection to a frozen server at once. */
function destroySocket (client: pg.PoolClient | pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}

function isBrokenConnection (err: unknown): boolean {
  const message = (err as Error | undefined)?.message ?? ''
  return /Query read timeout|Connection terminated|ECONNRESET|EPIPE|not queryable|ended/i.test(message)
}

/**
 * A node-postgres pool that never waits for ever: connection timeout, server
 * statement_timeout and a client-side query_timeout (the one that fires when
 * the server is frozen), idle-in-transaction timeout, TCP keep-alive, and an
 * 'error' listener so a dying idle connection is logged, not fatal.
 */
export async function openPostgres (url: string, opts: PostgresOptions = {}): Promise<Database> {
  const statementTimeoutMs = opts.statementTimeoutMs ?? 2000
  const connectionTimeoutMs = opts.connectionTimeoutMs ?? 2000
  const onError = opts.onError ?? (() => {})
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    min: Math.min(opts.min ?? 2, opts.max ?? 10),
    connectionTimeoutMillis: connectionTimeoutMs,
    idleTimeoutMillis: opts.idleTimeoutMs ?? 10_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
    idle_in_transaction_session_timeout: Math.max(60_000, statementTimeoutMs * 2),
    keepAlive: true,
    allowExitOnIdle: true,
    application_name: 'narrative-cache',
    types: int8Types
  })
  // Every connection, so close() can drop the ones a frozen server keeps open.
  const clients = new Set<pg.PoolClient>()
  pool.on('connect', client => { clients.add(client) })
  pool.on('remove', client => { clients.delete(client) })
  pool.on('error', err => { onError(err) })

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // pool.end() resolves once no client is checked out; each connection then says goodbye
      // to the server, which a frozen server never answers: wait for both, within a bound.
      const allGone = new Promise<void>(resolve => {
        const check = (): void => { if (clients.size === 0) resolve() }
        pool.on('remove', check)
        check()
      })
      const ended = Promise.all([pool.end().catch(() => {}), allGone])
      const clean = await settledWithin(ended, PG_CLOSE_WAIT_MS)
      if (!clean) for (const client of clients) destroySocket(client)
      clients.clear()
    })()
    return closing
  }

  const database: Database = {
    kind: 'postgres',
    async query<T> (text: string, params?: unknown[], prepareAs?: string): Promise<T[]> {
      const res = (prepareAs === undefined ? await pool.query(text, params) : await pool.query({ name: prepareAs, text, values: params })) as unknown as PgResult | PgResult[]
      return lastRows<T>(res)
    },
    async transaction<T> (fn: (tx: Pick<Database, 'query'>) => Promise<T>, txOpts: TransactionOptions = {}): Promise<T> {
      const client = await pool.connect()
      // A checked-out client's connection error has no other listener: without one it would crash the process.
      let clientError: Error | undefined
      const onClientError = (err: Error): void => { clientError = err; onError(err) }
      client.on('error', onClientError)
      const queryTimeout = txOpts.timeoutMs !== undefined ? txOpts.timeoutMs + CLIENT_TIMEOUT_MARGIN_MS : undefined
      const run = async (text: string, params?: unknown[]): Promise<PgResult | PgResult[]> =>
        await client.query({ text, values: params, ...(queryTimeout !== undefined ? { query_timeout: queryTimeout } : {}) } as pg.QueryConfig) as unknown as PgResult | PgResult[]
      try {
        await run('BEGIN')
        if (txOpts.timeoutMs !== undefined) await run(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(txOpts.timeoutMs))}`)
        const tx = { query: async <R>(text: string, params?: unknown[]): Promise<R[]> => lastRows<R>(await run(text, params)) }
        const result = await fn(tx as Pick<Database, 'query'>)
        await run('COMMIT')
        client.off('error', onClientError)
        client.release()
        return result
      } catch (err) {
        let broken = clientError !== undefined || isBrokenConnection(err)
        if (!broken) {
          try { await run('ROLLBACK') } catch { broken = true }
        }
        client.off('error', onClientError)
        // release(err) destroys the connection (and the server rolls back); a clean ROLLBACK keeps it.
        client.release(broken ? (err as Error) : undefined)
        throw err
      }
    },
    async ping (): Promise<void> {
      await pool.query('SELECT 1')
    },
    close
  }

  if (opts.verify !== false) {
    try {
      await database.ping()
    } catch (err) {
      await close()
      throw new DatabaseUnavailableError(`PostgreSQL is not reachable: ${(err as Error).message}`, { cause: err })
    }
  }
  return database
}

// ---------------------------------------------------------------------------
// PGlite

interface SharedPglite {
  db: Promise<PGlite>
  refs: number
  lockFile: string
}

/** One PGlite per folder per process: opening a new folder costs seconds and hundreds of MB. */
const pglites = new Map<string, SharedPglite>()

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * PGlite is a single-process database: two processes on one folder silently
 * diverge and corrupt it. A lock file beside the folder (`<dir>.lock`, holding
 * the pid) refuses a second process; a lock left by a dead process is taken over.
 */
function acquireLock (lockFile: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile, 'wx')
      writeSync(fd, `${process.pid}\n`)
      closeSync(fd)
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      let pid = 0
      try { pid = Number(readFileSync(lockFile, 'utf8').split('\n')[0]) } catch { /* gone meanwhile */ }
      if (pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new DatabaseUnavailableError(`the embedded database ${dirname(lockFile)} is in use by process ${pid} (${lockFile})`)
      }
      try { unlinkSync(lockFile) } catch { /* someone else removed it */ }
    }
  }
  throw new DatabaseUnavailableError(`could not take the lock ${lockFile}`)
}

function releaseLock (lockFile: string): void {
  try {
    if (Number(readFileSync(lockFile, 'utf8').split('\n')[0]) === process.pid) unlinkSync(lockFile)
  } catch { /* already gone */ }
}

let exitHookInstalled = false
function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => { for (const shared of pglites.values()) releaseLock(shared.lockFile) })
}

/**
 * Embedded PostgreSQL (PGlite) persisted in `dataDir` (created if missing).
 * Opening the same folder again in this process shares the open instance; it
 * is closed when the last user closes. PGlite has one connection: it runs one
 * query or transaction at a time, in order.
 */
export async function openPglite (dataDir: string): Promise<Database> {
  const dir = resolve(dataDir)
  let shared = pglites.get(dir)
  if (shared === undefined) {
    const lockFile = `${dir}.lock`
    mkdirSync(dir, { recursive: true })
    acquireLock(lockFile)
    installExitHook()
    const opening = (async () => {
      const { PGlite } = await import('@electric-sql/pglite')
      return await PGlite.create(dir)
    })()
    const entry: SharedPglite = { db: opening, refs: 0, lockFile }
    shared = entry
    pglites.set(dir, entry)
    opening.catch(() => {
      if (pglites.get(dir) === entry) pglites.delete(dir)
      releaseLock(lockFile)
    })
  }
  shared.refs++
  let db: PGlite
  try {
    db = await shared.db
  } catch (err) {
    shared.refs--
    throw new DatabaseUnavailableError(`the embedded database in ${dir} could not be opened: ${(err as Error).message}`, { cause: err })
  }
  const entry = shared

  const run = async <T>(target: Pick<PGlite, 'query' | 'exec'>, text: string, params?: unknown[]): Promise<T[]> => {
    if (params === undefined || params.length === 0) {
      const results = await target.exec(text)
      return (results[results.length - 1]?.rows ?? []) as T[]
    }
    return (await target.query<T>(text, params)).rows
  }

  let closed: Promise<void> | undefined
  return {
    kind: 'pglite',
    query: async <T>(text: string, params?: unknown[]) => await run<T>(db, text, params),
    transaction: async <T>(fn: (tx: Pick<Database, 'query'>) => Promise<T>) =>
      await db.transaction(async tx => await fn({ query: async <R>(text: string, params?: unknown[]) => await run<R>(tx, text, params) } as Pick<Database, 'query'>)),
    async ping (): Promise<void> {
      await db.query('SELECT 1')
    },
    close (): Promise<void> {
      closed ??= (async () => {
        entry.refs--
        if (entry.refs > 0) return
        if (pglites.get(dir) === entry) pglites.delete(dir)
        try {
          await db.close()
        } finally {
          releaseLock(entry.lockFile)
        }
      })()
      return closed
    }
  }
}

export interface OpenDatabaseOptions {
  /** postgres:// URL; without it, the embedded PGlite. */
  databaseUrl?: string
  /** Where embedded data lives: PGlite uses `<dataDir>/pglite`. */
  dataDir: string
  postgres?: PostgresOptions
}

/** PostgreSQL when a URL is given, else PGlite under `dataDir`. */
export async function openDatabase (opts: OpenDatabaseOptions): Promise<Database> {
  if (opts.databaseUrl !== undefined && opts.databaseUrl !== '') return await openPostgres(opts.databaseUrl, opts.postgres)
  return await openPglite(pgliteDir(opts.dataDir))
}

/** The folder PGlite uses under DATA_DIR. */
export function pgliteDir (dataDir: string): string {
  return join(dataDir, 'pglite')
}

/**
 * A Database that may not be open yet: calls reject at once with
 * DatabaseUnavailableError until `attach` gives it the real one. Lets the
 * server start (and decorate) while PostgreSQL is down.
 */
export class DeferredDatabase implements Database {
  readonly kind: 'postgres' | 'pglite'
  #inner: Database | undefined

  constructor (kind: 'postgres' | 'pglite') {
    this.kind = kind
  }

  get attached (): boolean {
    return this.#inner !== undefined
  }

  attach (db: Database): void {
    this.#inner = db
  }

  #get (): Database {
    if (this.#inner === undefined) throw new DatabaseUnavailableError(`the ${this.kind === 'postgres' ? 'PostgreSQL' : 'embedded'} database is not open (yet)`)
    return this.#inner
  }

  async query<T = Record<string, unknown>> (text: string, params?: unknown[], prepareAs?: string): Promise<T[]> {
    return await this.#get().query<T>(text, params, prepareAs)
  }

  async transaction<T> (fn: (tx: Pick<Database, 'query'>) => Promise<T>, opts?: TransactionOptions): Promise<T> {
    return await this.#get().transaction(fn, opts)
  }

  async ping (): Promise<void> {
    await this.#get().ping()
  }

  async close (): Promise<void> {
    await this.#inner?.close()
  }
}
