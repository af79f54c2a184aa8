// Real throw-away PostgreSQL clusters for tests.
//
// initdb into a temp dir, trust auth, listen on 127.0.0.1:PORT only, the
// unix socket inside the temp dir (never /var/run/postgresql), fsync off.
// PostgreSQL refuses to run as root, so as root we run initdb/pg_ctl as the
// `postgres` OS user via runuser and hand it the temp dir.
import { execFile } from 'node:child_process'
import { accessSync, constants, existsSync, readdirSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './ports.ts'
import { childPids, isProcessAlive as isAlive, track } from './reaper.ts'
import { sleep } from './wait.ts'

const execFileP = promisify(execFile)

export interface PostgresProc {
  readonly port: number
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string
  /** postmaster pid (changes after restart()) */
  readonly pid: number
  /** temp dir holding data/, the socket and postgres.log; removed by stop() */
  readonly dir: string
  /** pg_ctl stop -m fast (SIGKILL fallback), then remove the temp dir. Idempotent. */
  stop(): Promise<void>
  /** Crash: SIGKILL the postmaster and its backends, wait until gone. Keeps the data dir. */
  kill(): Promise<void>
  /** SIGSTOP postmaster + backends: open connections and new connects both hang. */
  freeze(): void
  /** SIGCONT everything frozen. */
  thaw(): void
  /** Start again on the same port/data after kill() (crash recovery) or stop (fresh initdb). */
  restart(): Promise<void>
  /** CREATE DATABASE "name"; resolves with its URL. name: [A-Za-z_][A-Za-z0-9_]* */
  createDatabase(name: string): Promise<string>
  /** Last part of the server log, for diagnostics. */
  log(): Promise<string>
}

/** Finds a PostgreSQL binary on PATH, else in /usr/lib/postgresql/<newest>/bin (Debian layout). */
export function findPgBin (name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name)
    try { accessSync(p, constants.X_OK); return p } catch { /* keep looking */ }
  }
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root)
    ? readdirSync(root).filter(v => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a))
    : []
  for (const v of versions) {
    const p = join(root, v, 'bin', name)
    if (existsSync(p)) return p
  }
  throw new Error(`PostgreSQL binary "${name}" not found on PATH or in ${root}/*/bin`)
}

/** Runs SQL through psql against a connection URL; resolves with unaligned, tuples-only output. */
export async function psql (url: string, sql: string): Promise<string> {
  const { stdout } = await execFileP(findPgBin('psql'),
    ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
    { timeout: 15_000, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } })
  return stdout.replace(/\n$/, '')
}

const isRoot = (): boolean => process.getuid?.() === 0

function signal (pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig) } catch { /* already gone */ }
}

class PostgresServer implements PostgresProc {
  readonly port: number
  readonly url: string
  #dir = ''
  #pid = -1
  #untrackDir: (() => void) | undefined
  #untrackPid: (() => void) | undefined

  constructor (port: number) {
    this.port = port
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`
  }

  get pid (): number { return this.#pid }
  get dir (): string { return this.#dir }

  /** initdb/pg_ctl must not run as root: go through runuser in that case. */
  async #asPostgres (bin: string, args: string[], timeout = 60_000): Promise<string> {
    const [cmd, argv] = isRoot()
      ? ['runuser', ['-u', 'postgres', '--', findPgBin(bin), ...args]]
      : [findPgBin(bin), args]
    // cwd = our dir: the postgres user may not be able to read the caller's cwd
    const { stdout } = await execFileP(cmd as string, argv as string[], { cwd: this.#dir, timeout })
    return stdout
  }

  async log (): Promise<string> {
    return (await readFile(join(this.#dir, 'postgres.log'), 'utf8').catch(() => '')).slice(-8192)
  }

  async start (): Promise<void> {
    if (!this.#dir) {
      this.#dir = await mkdtemp(join(tmpdir(), 'nc-pg-'))
      this.#untrackDir = track('dir', this.#dir)
      if (isRoot()) await execFileP('chown', ['postgres:', this.#dir])
      // --no-sync: durability is pointless for a throw-away cluster, and it is faster
      await this.#asPostgres('initdb', ['-D', join(this.#dir, 'data'), '-U', 'postgres',
        '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
    }
    await this.#removeStalePidFile()
    // -l is required: without it the postmaster inherits our stdout pipe and
    // execFile would never see it close. pg_ctl -w returns once it accepts connections.
    // fsync=off keeps commits cheap but still durable across a *process* crash
    // (kill()), since the WAL reaches the OS page cache. synchronous_commit
    // stays on: with it off, kill() would lose the last ~200 ms of commits.
    const serverOpts = `-p ${this.port} -c listen_addresses=127.0.0.1 -k '${this.#dir}' ` +
      '-c fsync=off -c full_page_writes=off'
    try {
      await this.#asPostgres('pg_ctl', ['-D', join(this.#dir, 'data'), '-l', join(this.#dir, 'postgres.log'),
        '-o', serverOpts, '-w', '-t', '30', 'start'])
    } catch (err) {
      // pg_ctl may give up (-t) while a postmaster is still coming up: adopt it so stop() kills it
      const pid = Number((await readFile(join(this.#dir, 'data', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
      if (pid > 0 && isAlive(pid)) {
        this.#pid = pid
        this.#untrackPid = track('pgtree', pid)
      }
      throw new Error(`PostgreSQL on port ${this.port} did not start: ${(err as Error).message}\n${await this.log()}`)
    }
    const pidFile = await readFile(join(this.#dir, 'data', 'postmaster.pid'), 'utf8')
    this.#pid = Number(pidFile.split('\n')[0])
    this.#untrackPid = track('pgtree', this.#pid)
  }

  /**
   * After kill() the postmaster may linger as a zombie until PID 1 reaps it,
   * and PostgreSQL's own check (kill(pid, 0)) would then refuse to start:
   * "lock file ... already exists". We know better: drop the stale lock files
   * (data/postmaster.pid and the unix socket's .lock, each holding the pid).
   */
  async #removeStalePidFile (): Promise<void> {
    const sock = join(this.#dir, `.s.PGSQL.${this.port}`)
    for (const [lock, extra] of [[join(this.#dir, 'data', 'postmaster.pid'), ''], [sock + '.lock', sock]]) {
      const pid = Number((await readFile(lock, 'utf8').catch(() => '')).split('\n')[0])
      if (pid > 0 && !isAlive(pid)) {
        await rm(lock, { force: true })
        if (extra) await rm(extra, { force: true })
      }
    }
  }

  async #waitGone (pids: number[], ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (pids.some(isAlive)) {
      if (Date.now() > deadline) return false
      await sleep(25)
    }
    return true
  }

  async kill (): Promise<void> {
    if (this.#pid <= 0 || !isAlive(this.#pid)) return
    const pm = this.#pid
    signal(pm, 'SIGSTOP') // so it cannot fork replacements while we kill its children
    const kids = childPids(pm)
    for (const c of kids) { signal(c, 'SIGCONT'); signal(c, 'SIGKILL') }
    signal(pm, 'SIGKILL')
    await this.#waitGone([pm, ...kids], 5000)
    this.#untrackPid?.()
  }

  async stop (): Promise<void> {
    if (this.#pid > 0 && isAlive(this.#pid)) {
      this.thaw()
      try {
        await this.#asPostgres('pg_ctl', ['-D', join(this.#dir, 'data'), '-m', 'fast', '-w', '-t', '10', 'stop'], 15_000)
      } catch {
        await this.kill()
      }
    }
    this.#untrackPid?.()
    this.#pid = -1
    if (this.#dir) {
      await rm(this.#dir, { recursive: true, force: true, maxRetries: 3 })
      this.#untrackDir?.()
      this.#dir = ''
    }
  }

  freeze (): void {
    if (this.#pid <= 0) return
    signal(this.#pid, 'SIGSTOP') // first, so it does not notice the stopped children
    for (const c of childPids(this.#pid)) signal(c, 'SIGSTOP')
  }

  thaw (): void {
    if (this.#pid <= 0) return
    for (const c of childPids(this.#pid)) signal(c, 'SIGCONT')
    signal(this.#pid, 'SIGCONT')
  }

  async restart (): Promise<void> {
    if (this.#pid > 0 && isAlive(this.#pid)) {
      this.thaw()
      await this.#asPostgres('pg_ctl', ['-D', join(this.#dir, 'data'), '-m', 'fast', '-w', '-t', '10', 'stop'], 15_000)
      this.#untrackPid?.()
    }
    await this.start()
  }

  async createDatabase (name: string): Promise<string> {
    // the name is interpolated into SQL, so allow only plain identifiers
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name: ${name}`)
    await psql(this.url, `CREATE DATABASE "${name}"`)
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`
  }
}

/** Starts a private PostgreSQL cluster (about 1 s). Retries on a port race when no port is given. */
export async function startPostgres (opts: { port?: number } = {}): Promise<PostgresProc> {
  for (let attempt = 1; ; attempt++) {
    const server = new PostgresServer(opts.port ?? await freePort())
    try {
      await server.start()
      return server
    } catch (err) {
      await server.stop().catch(() => {})
      const portRace = /could not bind|Address already in use/i.test(String((err as Error).message))
      if (opts.port !== undefined || !portRace || attempt >= 3) throw err
    }
  }
}
