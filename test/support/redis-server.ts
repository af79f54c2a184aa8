// Real redis-server processes for tests (no in-memory fakes).
//
// Each server gets its own temp dir and port, is non-persistent
// (--save '' --appendonly no) so start/stop is fast, and is registered with
// the reaper so it dies with the Node process even if a test forgets stop().
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './ports.ts'
import { track } from './reaper.ts'
import { sleep } from './wait.ts'

const execFileP = promisify(execFile)

export interface StartRedisOptions {
  /** Port to bind; a free one is picked when omitted. */
  port?: number
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[]
  /** How long to wait for PONG before giving up (default 10 s). */
  startTimeoutMs?: number
}

export interface RedisProc {
  readonly port: number
  /** redis://127.0.0.1:PORT */
  readonly url: string
  /** Current pid (changes after restart()). */
  readonly pid: number
  /** Working directory (--dir); removed by stop(). */
  readonly dir: string
  /** Last ~16 KB of the server's stdout+stderr, for diagnostics. */
  readonly output: string
  /** Graceful: SIGTERM, SIGKILL after 3 s, then remove the temp dir. Idempotent. */
  stop(): Promise<void>
  /** Crash: SIGKILL and wait for exit. Keeps the dir so restart() can reuse it. */
  kill(): Promise<void>
  /** SIGSTOP: the port still accepts TCP connections but nothing is answered. */
  freeze(): void
  /** SIGCONT. */
  thaw(): void
  /** Start again on the same port and args (after kill()/stop(); stops first if running). */
  restart(): Promise<void>
  flushall(): Promise<void>
}

/** Runs `redis-cli -h 127.0.0.1 -p PORT ...args`; resolves with stdout minus the trailing newline. */
export async function redisCli (port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    timeout: 10_000
  })
  return stdout.replace(/\n$/, '')
}

/**
 * Sends one inline command over a raw TCP socket and resolves with the first
 * reply (simple string, error, integer or bulk string, as text), or
 * undefined on refusal/timeout. Cheaper than spawning redis-cli in a loop.
 */
export function rawRedisCommand (port: number, command: string, timeoutMs = 500): Promise<string | undefined> {
  return new Promise(resolve => {
    let buf = Buffer.alloc(0)
    const sock = connect({ port, host: '127.0.0.1' })
    const done = (v: string | undefined): void => { sock.destroy(); resolve(v) }
    sock.setTimeout(timeoutMs, () => done(undefined))
    sock.on('error', () => done(undefined))
    sock.on('connect', () => sock.write(command + '\r\n'))
    sock.on('data', d => {
      buf = Buffer.concat([buf, d])
      const eol = buf.indexOf('\r\n')
      if (eol < 0) return
      const head = buf.subarray(0, eol).toString()
      if (head[0] !== '$') { done(head); return }
      const len = Number(head.slice(1))
      if (len < 0) { done(''); return }
      if (buf.length >= eol + 2 + len) done(buf.subarray(eol + 2, eol + 2 + len).toString())
    })
  })
}

/** True only on `+PONG` (not on `-LOADING`, a refused connection or a timeout). */
export async function pingRedis (port: number, timeoutMs = 500): Promise<boolean> {
  return (await rawRedisCommand(port, 'PING', timeoutMs)) === '+PONG'
}

/** process_id from INFO server: tells us WHICH redis answers on a port. */
async function serverPid (port: number): Promise<number | undefined> {
  const info = await rawRedisCommand(port, 'INFO server')
  const m = info?.match(/process_id:(\d+)/)
  return m ? Number(m[1]) : undefined
}

class RedisServer implements RedisProc {
  readonly port: number
  readonly url: string
  #dir = ''
  #args: string[]
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()
  #output = ''
  #untrackDir: (() => void) | undefined
  #startTimeoutMs: number

  constructor (port: number, args: string[], startTimeoutMs: number) {
    this.port = port
    this.url = `redis://127.0.0.1:${port}`
    this.#args = args
    this.#startTimeoutMs = startTimeoutMs
  }

  get pid (): number { return this.#child?.pid ?? -1 }
  get dir (): string { return this.#dir }
  get output (): string { return this.#output }

  #running (): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null
  }

  async start (): Promise<void> {
    if (!this.#dir) {
      this.#dir = await mkdtemp(join(tmpdir(), 'nc-redis-'))
      this.#untrackDir = track('dir', this.#dir)
    }
    const argv = ['--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', this.#dir, ...this.#args]
    // detached: own process group, so a terminal Ctrl-C does not kill it
    // before the owner can stop it in order.
    const child = spawn('redis-server', argv, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    const onData = (d: Buffer): void => {
      this.#output = (this.#output + d.toString()).slice(-16_384)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    // A forgotten server must not keep the test process alive: the reaper
    // kills it on exit instead.
    child.unref()
    for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.()

    let failure: Error | undefined
    this.#exited = new Promise(resolve => {
      child.on('error', err => { failure ??= err; resolve() })
      child.once('exit', (code, sig) => {
        failure ??= new Error(`redis-server exited (code ${code}, signal ${sig})`)
        resolve()
      })
    })
    const untrackPid = child.pid ? track('pid', child.pid) : () => {}
    this.#exited.then(untrackPid, untrackPid)

    // Ready = PONG *from our process*: if the port is taken, another redis
    // would answer PING while ours exits with "Address already in use".
    const deadline = Date.now() + this.#startTimeoutMs
    while (!(await pingRedis(this.port) && await serverPid(this.port) === child.pid)) {
      if (failure || Date.now() > deadline) {
        if (!failure) child.kill('SIGKILL')
        await this.#exited
        throw new Error(`redis-server on port ${this.port} did not start: ` +
          `${failure?.message ?? `no PONG within ${this.#startTimeoutMs} ms`}\n${this.#output}`)
      }
      await sleep(25)
    }
  }

  /** Resolves true if the process exited within `ms`. */
  async #waitExit (ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    // this timer is ref'd on purpose: it keeps the loop alive while we wait
    const timeout = new Promise<false>(resolve => { timer = setTimeout(resolve, ms, false) })
    const ok = await Promise.race([this.#exited.then(() => true), timeout])
    clearTimeout(timer)
    return ok
  }

  async #terminate (): Promise<void> {
    if (!this.#running()) return
    this.thaw() // a stopped process would not act on SIGTERM until continued
    this.#child?.kill('SIGTERM')
    if (!(await this.#waitExit(3000))) {
      this.#child?.kill('SIGKILL')
      await this.#waitExit(5000)
    }
  }

  async stop (): Promise<void> {
    await this.#terminate()
    if (this.#dir) {
      await rm(this.#dir, { recursive: true, force: true })
      this.#untrackDir?.()
      this.#dir = ''
    }
  }

  async kill (): Promise<void> {
    if (!this.#running()) return
    this.#child?.kill('SIGKILL') // works on a SIGSTOPped process too
    await this.#waitExit(5000)
  }

  freeze (): void {
    if (this.#running()) this.#child?.kill('SIGSTOP')
  }

  thaw (): void {
    if (this.#running()) this.#child?.kill('SIGCONT')
  }

  async restart (): Promise<void> {
    await this.#terminate()
    await this.start()
  }

  async flushall (): Promise<void> {
    await redisCli(this.port, 'FLUSHALL')
  }
}

/** Starts a private redis-server and waits until it answers PONG. */
export async function startRedis (opts: StartRedisOptions = {}): Promise<RedisProc> {
  const server = new RedisServer(opts.port ?? await freePort(), opts.args ?? [], opts.startTimeoutMs ?? 10_000)
  try {
    await server.start()
  } catch (err) {
    await server.stop().catch(() => {})
    throw err
  }
  return server
}

export interface RedisCluster {
  /** "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" */
  seeds: string
  nodes: RedisProc[]
  stop(): Promise<void>
}

/**
 * Three masters, no replicas, all 16384 slots assigned. Each node gets an
 * explicit --cluster-port (Redis >= 7) because the default bus port
 * (port + 10000) may be busy or exceed 65535 for a random ephemeral port.
 * Nodes keep their dir on kill(), so restart() rejoins with the same identity.
 */
export async function startRedisCluster (opts: { startTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const timeoutMs = opts.startTimeoutMs ?? 20_000
  const ports: number[] = []
  while (ports.length < 6) {
    const p = await freePort()
    if (!ports.includes(p)) ports.push(p)
  }
  const started = await Promise.allSettled([0, 1, 2].map(i => startRedis({
    port: ports[i],
    args: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${ports[i]}.conf`,
      '--cluster-node-timeout', '2000', '--cluster-port', String(ports[i + 3])]
  })))
  const nodes = started.flatMap(r => (r.status === 'fulfilled' ? [r.value] : []))
  const stop = async (): Promise<void> => { await Promise.all(nodes.map(n => n.stop())) }
  try {
    const failed = started.find(r => r.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    const addrs = nodes.map(n => `127.0.0.1:${n.port}`)
    await execFileP('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: timeoutMs
    })
    // Every node (not only the first) must agree, or a client that follows
    // a MOVED to a lagging node could still see CLUSTERDOWN.
    const deadline = Date.now() + timeoutMs
    for (const n of nodes) {
      while (!(await redisCli(n.port, 'cluster', 'info').catch(() => '')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`redis cluster not ok after ${timeoutMs} ms (node ${n.port})`)
        await sleep(50)
      }
    }
    return { seeds: addrs.join(','), nodes, stop }
  } catch (err) {
    await stop().catch(() => {})
    throw err
  }
}
