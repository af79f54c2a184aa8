import type { Cluster, Redis } from 'ioredis'

/** Extends a lease only for its holder. */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`

/** Marks a lease's work done (kept ARGV[3] ms), only for its holder. */
const FINISH = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`

type LeaseClient = (Redis | Cluster) & {
  narrLeaseRenew: (key: string, token: string, ttlMs: string) => Promise<number>
  narrLeaseFinish: (key: string, token: string, done: string, keepMs: string) => Promise<number>
}

/**
 * Named leases for work one instance of the fleet does at a time: taken with
 * a token and a TTL, renewed by their holder while it works, marked done when
 * it ends (so nobody does it again), and free to take over once a holder that
 * died stops renewing.
 */
export interface LeaseStore {
  /** true: taken; false: held by someone else; 'done': its work was done. */
  acquire: (key: string, token: string, ttlMs: number) => Promise<boolean | 'done'>
  /** false: the lease is no longer this holder's. */
  renew: (key: string, token: string, ttlMs: number) => Promise<boolean>
  finish: (key: string, token: string, keepMs: number) => Promise<void>
}

export const DONE = 'done'

export class RedisLeaseStore implements LeaseStore {
  private readonly client: LeaseClient

  constructor (client: Redis | Cluster) {
    client.defineCommand('narrLeaseRenew', { numberOfKeys: 1, lua: RENEW })
    client.defineCommand('narrLeaseFinish', { numberOfKeys: 1, lua: FINISH })
    this.client = client as LeaseClient
  }

  async acquire (key: string, token: string, ttlMs: number): Promise<boolean | 'done'> {
    if ((await this.client.set(key, token, 'PX', Math.round(ttlMs), 'NX')) === 'OK') return true
    return (await this.client.get(key)) === DONE ? 'done' : false
  }

  async renew (key: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.client.narrLeaseRenew(key, token, String(Math.round(ttlMs)))) === 1
  }

  async finish (key: string, token: string, keepMs: number): Promise<void> {
    await this.client.narrLeaseFinish(key, token, DONE, String(Math.round(keepMs)))
  }
}

/** In this process only (no Redis: one instance). */
export class MemoryLeaseStore implements LeaseStore {
  private readonly leases = new Map<string, { value: string, until: number }>()
  private readonly clock: () => number

  constructor (clock: () => number = Date.now) {
    this.clock = clock
  }

  private live (key: string): { value: string, until: number } | undefined {
    const lease = this.leases.get(key)
    if (lease !== undefined && lease.until <= this.clock()) {
      this.leases.delete(key)
      return undefined
    }
    return lease
  }

  async acquire (key: string, token: string, ttlMs: number): Promise<boolean | 'done'> {
    const lease = this.live(key)
    if (lease !== undefined) return lease.value === DONE ? 'done' : false
    this.leases.set(key, { value: token, until: this.clock() + ttlMs })
    return true
  }

  async renew (key: string, token: string, ttlMs: number): Promise<boolean> {
    const lease = this.live(key)
    if (lease?.value !== token) return false
    lease.until = this.clock() + ttlMs
    return true
  }

  async finish (key: string, token: string, keepMs: number): Promise<void> {
    if (this.live(key)?.value === token) this.leases.set(key, { value: DONE, until: this.clock() + keepMs })
  }
}
