import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { RedisTarget } from '../config.ts'
import type { CacheStore } from './store.ts'

/**
 * Newer wins: write only when the stored value's 13-digit version header is
 * older than ours (or absent or unreadable). One key, so it is Cluster-safe.
 */
const SET_IF_NEWER = `
local cur = redis.call('GETRANGE', KEYS[1], 0, 12)
if string.len(cur) == 13 and string.match(cur, '^%d+$') and tonumber(cur) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`

/** Compare-and-delete: only the holder of the token frees the lock. */
const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`

/** A fixed window: the first increment sets the window's TTL. */
const INCR_WINDOW = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}`

type ScriptedClient = (Redis | Cluster) & {
  narrIncrWindow: (key: string, windowMs: string) => Promise<[number, number]>
  narrSetIfNewer: (key: string, value: Buffer, version: string, ttlMs: string) => Promise<number>
  narrReleaseLock: (key: string, token: string) => Promise<number>
}

/**
 * Options that make a dead or frozen Redis fail fast: a 1 s command timeout
 * (ioredis has none by default, and a frozen server never closes its socket),
 * no offline queue (commands fail at once while disconnected instead of piling
 * up), one retry per command, and reconnects with capped exponential backoff.
 */
export function clientOptions (commandTimeoutMs = 1000): RedisOptions {
  return {
    commandTimeout: commandTimeoutMs,
    connectTimeout: 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 10), 2000),
    lazyConnect: true
  }
}

/**
 * After a failover the old master is a replica: a write it refuses (READONLY)
 * means "reconnect and ask the Sentinels again", then resend the command.
 */
function reconnectOnReadonly (err: Error): 2 | false {
  return err.message.startsWith('READONLY') ? 2 : false
}

/**
 * The client for a target of the configuration: one URL, Cluster seeds, or
 * Sentinels. Credentials and TLS (with the configured CA) reach every node;
 * with Sentinels the client asks them for the master on every (re)connect,
 * so after a failover it lands on the new master; a duplicate() (the pub/sub
 * connection) does the same.
 */
export function createRedisClient (target: Exclude<RedisTarget, { kind: 'memory' }>, commandTimeoutMs = 1000): Redis | Cluster {
  const options: RedisOptions = { ...clientOptions(commandTimeoutMs), reconnectOnError: reconnectOnReadonly }
  if (target.username !== undefined) options.username = target.username
  if (target.password !== undefined) options.password = target.password
  if (target.tls !== undefined) options.tls = { ...target.tls }
  if (target.kind === 'single') return new Redis(target.url, options)
  if (target.kind === 'sentinel') {
    return new Redis({
      ...options,
      sentinels: target.sentinels,
      name: target.name,
      sentinelPassword: target.sentinelPassword,
      enableTLSForSentinelMode: target.tls !== undefined,
      sentinelTLS: target.tls !== undefined ? { ...target.tls } : undefined,
      sentinelCommandTimeout: 1000,
      // All Sentinels unreachable: try again, never give up (the breaker keeps requests off Redis meanwhile).
      sentinelRetryStrategy: (times: number) => Math.min(100 * times, 2000)
      // No failoverDetector: its Sentinel connections outlive a client closed
      // while it reconnects (ioredis 6), keeping the process alive. A failover
      // is seen anyway: the Sentinels kill the demoted master's client
      // connections, and a write it refuses (READONLY) reconnects.
    })
  }
  return new Cluster(target.seeds, {
    redisOptions: options,
    enableOfflineQueue: false,
    lazyConnect: true,
    clusterRetryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 10), 2000),
    slotsRefreshTimeout: 2000,
    // TLS: the nodes' names are kept as they are announced, not resolved first (ioredis' advice for TLS clusters).
    ...(target.tls !== undefined ? { dnsLookup: (address: string, callback: (err: Error | null, address: string) => void) => callback(null, address) } : {})
  })
}

export interface RedisStoreOptions {
  /** Called on connection-level errors; ioredis throws if nobody listens. */
  onError?: (err: Error) => void
}

export class RedisStore implements CacheStore {
  readonly kind: 'redis' | 'cluster'
  private readonly client: ScriptedClient
  private subscriber: Redis | Cluster | undefined
  private readonly handlers = new Map<string, Set<(message: string) => void>>()

  private readonly options: RedisStoreOptions

  constructor (client: Redis | Cluster, options: RedisStoreOptions = {}) {
    this.options = options
    this.kind = client instanceof Cluster ? 'cluster' : 'redis'
    client.defineCommand('narrSetIfNewer', { numberOfKeys: 1, lua: SET_IF_NEWER })
    client.defineCommand('narrReleaseLock', { numberOfKeys: 1, lua: RELEASE_LOCK })
    client.defineCommand('narrIncrWindow', { numberOfKeys: 1, lua: INCR_WINDOW })
    this.client = client as ScriptedClient
  }

  get redis (): Redis | Cluster {
    return this.client
  }

  async get (key: string): Promise<Buffer | null> {
    return await this.client.getBuffer(key)
  }

  async setIfNewer (key: string, value: Buffer, version: number, ttlMs: number): Promise<boolean> {
    return (await this.client.narrSetIfNewer(key, value, String(version), String(Math.max(1, Math.round(ttlMs))))) === 1
  }

  async set (key: string, value: string, ttlMs: number): Promise<void> {
    await this.client.set(key, value, 'PX', Math.max(1, Math.round(ttlMs)))
  }

  async del (key: string): Promise<number> {
    return await this.client.del(key)
  }

  async acquireLock (key: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.client.set(key, token, 'PX', Math.max(1, Math.round(ttlMs)), 'NX')) === 'OK'
  }

  async releaseLock (key: string, token: string): Promise<boolean> {
    return (await this.client.narrReleaseLock(key, token)) === 1
  }

  async incrWindow (key: string, windowMs: number): Promise<{ count: number, ttlMs: number }> {
    const [count, ttlMs] = await this.client.narrIncrWindow(key, String(Math.max(1, Math.round(windowMs))))
    return { count, ttlMs }
  }

  /**
   * SCAN MATCH on each master (a Cluster's keys are spread over them), and
   * UNLINK per batch. Keys from one node's SCAN live on that node, but may span
   * slots, so a Cluster unlinks them one command each, pipelined.
   */
  async scanDelete (match: string, batchSize: number): Promise<number> {
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client as Redis]
    let deleted = 0
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', batchSize)
        cursor = next
        if (keys.length === 0) continue
        if (this.client instanceof Cluster) {
          const pipeline = node.pipeline()
          for (const key of keys) pipeline.unlink(key)
          const results = await pipeline.exec()
          for (const [err, n] of results ?? []) if (err === null) deleted += Number(n)
        } else {
          deleted += await node.unlink(...keys)
        }
      } while (cursor !== '0')
    }
    return deleted
  }

  async publish (channel: string, message: string): Promise<void> {
    await this.client.publish(channel, message)
  }

  /**
   * One extra connection carries every subscription. It keeps an offline queue
   * (it only ever sends SUBSCRIBE) and re-subscribes after every reconnect, so
   * subscribers survive a Redis restart without help. On a single node we
   * re-subscribe ourselves rather than let ioredis do it: its own re-subscribe
   * leaves the command's promise without a handler, so a SUBSCRIBE that times
   * out on a flaky link became an unhandled rejection, which stops the process.
   */
  async subscribe (channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
    if (this.subscriber === undefined) {
      const sub: Redis | Cluster = this.client instanceof Cluster
        ? this.client.duplicate(undefined, { enableOfflineQueue: true, lazyConnect: false })
        : (this.client as Redis).duplicate({ enableOfflineQueue: true, lazyConnect: false, autoResubscribe: false })
      if (!(sub instanceof Cluster)) {
        sub.on('ready', () => {
          const channels = [...this.handlers.keys()]
          if (channels.length > 0) sub.subscribe(...channels).catch(err => this.options.onError?.(err as Error))
        })
      }
      sub.on('error', err => this.options.onError?.(err))
      sub.on('message', (ch: string, message: string) => {
        for (const handler of this.handlers.get(ch) ?? []) handler(message)
      })
      this.subscriber = sub
    }
    let set = this.handlers.get(channel)
    if (set === undefined) {
      set = new Set()
      this.handlers.set(channel, set)
      this.subscriber.subscribe(channel).catch(err => this.options.onError?.(err as Error))
    }
    set.add(onMessage)
    return async () => {
      set.delete(onMessage)
      if (set.size === 0 && this.handlers.get(channel) === set) {
        this.handlers.delete(channel)
        await this.subscriber?.unsubscribe(channel).catch(() => {})
      }
    }
  }

  async ping (): Promise<void> {
    await this.client.ping()
  }

  async info (): Promise<{ keys: number, memoryUsedBytes: number }> {
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client as Redis]
    let keys = 0
    let memory = 0
    for (const node of nodes) {
      keys += await node.dbsize()
      const text = await node.info('memory')
      const m = /used_memory:(\d+)/.exec(text)
      if (m !== null) memory += Number(m[1])
    }
    return { keys, memoryUsedBytes: memory }
  }

  async close (): Promise<void> {
    const sub = this.subscriber
    this.subscriber = undefined
    this.handlers.clear()
    // Dropping the subscriber's socket is enough: it holds no state worth a QUIT that may hang.
    sub?.disconnect()
  }
}
