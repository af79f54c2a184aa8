import type { Cluster, Redis } from 'ioredis'

/**
 * A token bucket on Redis's clock: refills at ARGV[1] tokens a millisecond up
 * to ARGV[2]; takes one when there is one (0), or answers how many
 * milliseconds until there is. One key, so it is Cluster-safe; TIME inside a
 * script is allowed since Redis 5 (effects replication, the default in 7).
 */
const TAKE_TOKEN = `
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(s[1])
local at = tonumber(s[2])
if tokens == nil or at == nil then tokens = cap; at = now end
if now > at then tokens = math.min(cap, tokens + (now - at) * rate) end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait`

type BucketClient = (Redis | Cluster) & { narrTakeToken: (key: string, perMs: string, capacity: string, ttlMs: string) => Promise<number> }

export interface TokenBucket {
  /** Takes a token: 0 when taken, else the milliseconds until one may be (nothing taken). */
  take: () => Promise<number>
  readonly perMinute: number
  readonly capacity: number
}

/** A bucket's burst: a second's worth of tokens (at least 1), so no minute ever holds more than the rate and one second's worth. */
export function burstOf (perMinute: number): number {
  return Math.max(1, Math.floor(perMinute / 60))
}

/** One bucket for every instance on the Redis (Cluster) they share. A Redis that fails answers "wait a second". */
export class RedisTokenBucket implements TokenBucket {
  readonly perMinute: number
  readonly capacity: number
  private readonly client: BucketClient
  private readonly key: string

  constructor (client: Redis | Cluster, key: string, perMinute: number, capacity = burstOf(perMinute)) {
    if (!(perMinute > 0 && capacity >= 1)) throw new Error('token bucket rate must be positive and capacity at least 1')
    client.defineCommand('narrTakeToken', { numberOfKeys: 1, lua: TAKE_TOKEN })
    this.client = client as BucketClient
    this.key = key
    this.perMinute = perMinute
    this.capacity = capacity
  }

  async take (): Promise<number> {
    try {
      return Number(await this.client.narrTakeToken(this.key, String(this.perMinute / 60_000), String(this.capacity), '3600000'))
    } catch {
      return 1000
    }
  }
}

/** The same bucket in this process alone (no Redis: one instance). */
export class MemoryTokenBucket implements TokenBucket {
  readonly perMinute: number
  readonly capacity: number
  private tokens: number
  private at: number
  private readonly clock: () => number

  constructor (perMinute: number, capacity = burstOf(perMinute), clock: () => number = Date.now) {
    if (!(perMinute > 0 && capacity >= 1)) throw new Error('token bucket rate must be positive and capacity at least 1')
    this.perMinute = perMinute
    this.capacity = capacity
    this.clock = clock
    this.tokens = capacity
    this.at = clock()
  }

  async take (): Promise<number> {
    const now = this.clock()
    const perMs = this.perMinute / 60_000
    if (now > this.at) this.tokens = Math.min(this.capacity, this.tokens + (now - this.at) * perMs)
    this.at = Math.max(now, this.at)
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 0
    }
    return Math.ceil((1 - this.tokens) / perMs)
  }
}
