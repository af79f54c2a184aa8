// A fleet on loopback from Debian's packages: N server processes (node
// src/server.ts) behind a real nginx using the project's own proxy settings
// (ops/nginx/narrative-proxy.conf). Used by the fleet test and the fleet bench.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { freePort } from './ports.ts'
import { track } from './reaper.ts'
import { sleep } from './wait.ts'

const ROOT = resolve(import.meta.dirname, '../..')

export interface Instance {
  readonly port: number
  readonly pid: number
  readonly alive: boolean
  /** Last ~16 KB of stderr. */
  readonly output: string
  /** Starts the process; `env` is added to its environment from now on (a restart keeps it). */
  start(env?: Record<string, string>): Promise<void>
  /** SIGKILL: a crash, no goodbye. */
  kill(): Promise<void>
  /** SIGTERM and wait. */
  stop(): Promise<void>
}

async function waitReady (port: number, child: ChildProcess, output: () => string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`server on ${port} exited (${child.exitCode ?? child.signalCode})\n${output()}`)
    try {
      const res = await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.ok) return
    } catch {}
    if (Date.now() > deadline) throw new Error(`server on ${port} not ready within ${timeoutMs} ms\n${output()}`)
    await sleep(100)
  }
}

class ServerInstance implements Instance {
  child: ChildProcess | undefined
  #output = ''
  readonly port: number
  env: Record<string, string>
  constructor (port: number, env: Record<string, string>) {
    this.port = port
    this.env = env
  }

  get pid (): number { return this.child?.pid ?? -1 }
  get alive (): boolean { return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null }
  get output (): string { return this.#output }

  async start (env: Record<string, string> = {}): Promise<void> {
    this.env = { ...this.env, ...env }
    const child = spawn(process.execPath, ['src/server.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, PORT: String(this.port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true
    })
    this.child = child
    child.stderr?.on('data', (d: Buffer) => { this.#output = (this.#output + d.toString()).slice(-16_384) })
    const untrack = child.pid !== undefined ? track('pid', child.pid) : () => {}
    child.once('exit', untrack)
    await waitReady(this.port, child, () => this.#output)
  }

  async #signal (sig: NodeJS.Signals, waitMs: number): Promise<void> {
    const child = this.child
    if (child === undefined || !this.alive) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill(sig)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([exited, new Promise(resolve => { timer = setTimeout(resolve, waitMs) })])
    clearTimeout(timer)
    if (this.alive) child.kill('SIGKILL')
  }

  async kill (): Promise<void> { await this.#signal('SIGKILL', 5000) }
  async stop (): Promise<void> { await this.#signal('SIGTERM', 15_000) }
}

export interface Balancer {
  readonly port: number
  readonly url: string
  readonly output: string
  stop(): Promise<void>
}

/** nginx on a free loopback port, the given upstream ports, the project's proxy settings. */
export async function startNginx (upstreamPorts: number[]): Promise<Balancer> {
  const dir = await mkdtemp(join(tmpdir(), 'nc-nginx-'))
  const untrackDir = track('dir', dir)
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, sub), { mode: 0o777 })
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  await writeFile(conf, `
worker_processes 2;
worker_rlimit_nofile 16384;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
user root root;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream narrative_api {
${upstreamPorts.map(p => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=2s;`).join('\n')}
    keepalive 64;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    client_max_body_size 32k;
    include ${join(ROOT, 'ops/nginx/narrative-proxy.conf')};
  }
}
`)
  let output = ''
  const child = spawn('nginx', ['-c', conf, '-p', dir], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-8192) })
  child.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-8192) })
  const untrack = child.pid !== undefined ? track('pgtree', child.pid) : () => {}
  const exited = new Promise(resolve => child.once('exit', resolve))
  const deadline = Date.now() + 10_000
  while (true) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${output}`)
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status < 500) break
    } catch {}
    if (Date.now() > deadline) throw new Error(`nginx did not answer on ${port}: ${output}`)
    await sleep(50)
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    get output () { return output },
    async stop () {
      if (child.exitCode === null) {
        child.kill('SIGQUIT')
        let timer: NodeJS.Timeout | undefined
        await Promise.race([exited, new Promise(resolve => { timer = setTimeout(resolve, 5000) })])
        clearTimeout(timer)
        if (child.exitCode === null && child.pid !== undefined) { try { process.kill(-child.pid, 'SIGKILL') } catch {} }
      }
      untrack()
      await rm(dir, { recursive: true, force: true })
      untrackDir()
    }
  }
}

export interface Fleet {
  instances: Instance[]
  balancer: Balancer
  stop(): Promise<void>
}

/** `count` server processes on one environment (and each its own `envOf(index)`), behind nginx. */
export async function startFleet (count: number, env: Record<string, string>, envOf: (index: number) => Record<string, string> = () => ({})): Promise<Fleet> {
  const instances: ServerInstance[] = []
  for (let i = 0; i < count; i++) instances.push(new ServerInstance(await freePort(), { ...env, ...envOf(i) }))
  let balancer: Balancer | undefined
  const stop = async (): Promise<void> => {
    await balancer?.stop()
    await Promise.all(instances.map(i => i.stop()))
  }
  try {
    // One at a time: the first opens and migrates the database.
    for (const instance of instances) await instance.start()
    balancer = await startNginx(instances.map(i => i.port))
    return { instances, balancer, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
