// Redis as teams run it: a master, a replica and three Sentinels on loopback
// ports, each a real redis-server process (the Sentinels are
// `redis-server CONF --sentinel`). Used by the failover test and the fleet test.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.ts'
import { track } from './reaper.ts'
import { rawRedisCommand, redisCli, startRedis, type RedisProc } from './redis-server.ts'
import { sleep } from './wait.ts'

export interface SentinelSetOptions {
  /** The master's name the Sentinels monitor (default mymaster). */
  name?: string
  /** requirepass/masterauth of the master and replica. */
  password?: string
  /** How long a silent master takes to be judged down (default 1000 ms). */
  downAfterMs?: number
}

export interface SentinelSet {
  name: string
  password: string | undefined
  /** Data nodes: [0] starts as master, [1] as its replica. */
  nodes: RedisProc[]
  sentinelPorts: number[]
  /** "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3" (REDIS_SENTINELS). */
  sentinels: string
  /** The environment an app needs to reach this set. */
  env: Record<string, string>
  /** Port of the current master, as the Sentinels see it. */
  masterPort(): Promise<number>
  /**
   * SENTINEL FAILOVER, then wait until every Sentinel names the other node and
   * it answers as master. Resolves with the new master's port.
   */
  failover(timeoutMs?: number): Promise<number>
  stop(): Promise<void>
}

class SentinelProc {
  child: ChildProcess | undefined
  output = ''
  readonly port: number
  readonly conf: string
  constructor (port: number, conf: string) {
    this.port = port
    this.conf = conf
  }

  async start (): Promise<void> {
    const child = spawn('redis-server', [this.conf, '--sentinel'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    const onData = (d: Buffer): void => { this.output = (this.output + d.toString()).slice(-8192) }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.unref()
    for (const s of [child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.()
    const untrack = child.pid !== undefined ? track('pid', child.pid) : () => {}
    child.once('exit', untrack)
    const deadline = Date.now() + 10_000
    while ((await rawRedisCommand(this.port, 'PING')) === undefined) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`sentinel on ${this.port} did not start\n${this.output}`)
      await sleep(25)
    }
  }

  async stop (): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    // A ref'd timer keeps the loop alive while the (unref'd) child exits.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([exited, new Promise(resolve => { timer = setTimeout(resolve, 5000) })])
    clearTimeout(timer)
  }
}

async function sentinelMaster (port: number, name: string, password: string | undefined): Promise<number | undefined> {
  const auth = password !== undefined ? ['-a', password, '--no-auth-warning'] : []
  const out = await redisCli(port, ...auth, 'SENTINEL', 'get-master-addr-by-name', name).catch(() => '')
  const lines = out.split('\n')
  return lines.length >= 2 ? Number(lines[1]) : undefined
}

async function role (port: number, password: string | undefined): Promise<string> {
  const auth = password !== undefined ? ['-a', password, '--no-auth-warning'] : []
  return (await redisCli(port, ...auth, 'ROLE').catch(() => '')).split('\n')[0]
}

/** Master + replica + three Sentinels, ready: the replica in sync, every Sentinel seeing both others. */
export async function startSentinelSet (opts: SentinelSetOptions = {}): Promise<SentinelSet> {
  const name = opts.name ?? 'mymaster'
  const password = opts.password
  const nodes: RedisProc[] = []
  const sentinels: SentinelProc[] = []
  const dir = await mkdtemp(join(tmpdir(), 'nc-sentinel-'))
  const untrackDir = track('dir', dir)
  const stop = async (): Promise<void> => {
    await Promise.allSettled([...sentinels.map(s => s.stop()), ...nodes.map(n => n.stop())])
    await rm(dir, { recursive: true, force: true })
    untrackDir()
  }
  try {
    // The password is set once the node answers (startRedis waits for a PONG it would refuse).
    const withPassword = async (node: RedisProc): Promise<RedisProc> => {
      if (password !== undefined) {
        await redisCli(node.port, 'CONFIG', 'SET', 'masterauth', password)
        await redisCli(node.port, 'CONFIG', 'SET', 'requirepass', password)
      }
      return node
    }
    const master = await withPassword(await startRedis())
    nodes.push(master)
    nodes.push(await withPassword(await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })))
    const cli = (port: number, ...args: string[]): Promise<string> =>
      redisCli(port, ...(password !== undefined ? ['-a', password, '--no-auth-warning'] : []), ...args)
    const deadline = Date.now() + 20_000
    while (!(await cli(nodes[1].port, 'INFO', 'replication').catch(() => '')).includes('master_link_status:up')) {
      if (Date.now() > deadline) throw new Error('the replica did not sync')
      await sleep(50)
    }
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const conf = join(dir, `sentinel-${port}.conf`)
      await writeFile(conf, [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} 10000`,
        `sentinel parallel-syncs ${name} 1`,
        ...(password !== undefined ? [`sentinel auth-pass ${name} ${password}`] : []),
        ''
      ].join('\n'))
      const s = new SentinelProc(port, conf)
      sentinels.push(s)
      await s.start()
    }
    // Every Sentinel knows the replica and the two other Sentinels.
    for (const s of sentinels) {
      while (true) {
        const info = await redisCli(s.port, 'SENTINEL', 'master', name).catch(() => '')
        const field = (k: string): number => { const l = info.split('\n'); const i = l.indexOf(k); return i < 0 ? -1 : Number(l[i + 1]) }
        if (field('num-slaves') >= 1 && field('num-other-sentinels') >= 2) break
        if (Date.now() > deadline + 20_000) throw new Error(`sentinel ${s.port} did not discover the set\n${info}`)
        await sleep(100)
      }
    }
    const sentinelPorts = sentinels.map(s => s.port)
    const list = sentinelPorts.map(p => `127.0.0.1:${p}`).join(',')
    const masterPort = async (): Promise<number> => (await sentinelMaster(sentinelPorts[0], name, undefined)) ?? -1
    return {
      name,
      password,
      nodes,
      sentinelPorts,
      sentinels: list,
      env: { REDIS_SENTINELS: list, REDIS_SENTINEL_NAME: name, ...(password !== undefined ? { REDIS_PASSWORD: password } : {}) },
      masterPort,
      async failover (timeoutMs = 30_000) {
        const before = await masterPort()
        const until = Date.now() + timeoutMs
        // A failover refused (-NOGOODSLAVE while the replica catches up) is asked again.
        while (!(await redisCli(sentinelPorts[0], 'SENTINEL', 'FAILOVER', name).catch(err => String(err))).startsWith('OK')) {
          if (Date.now() > until) throw new Error('SENTINEL FAILOVER was refused until the deadline')
          await sleep(200)
        }
        while (true) {
          const seen = await Promise.all(sentinelPorts.map(p => sentinelMaster(p, name, undefined)))
          const after = seen[0]
          if (after !== undefined && after !== before && seen.every(p => p === after) && await role(after, password) === 'master') return after
          if (Date.now() > until) throw new Error(`the failover did not complete within ${timeoutMs} ms (sentinels see ${seen.join(',')})`)
          await sleep(50)
        }
      },
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}
