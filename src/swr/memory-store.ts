import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import type { CacheStore } from './store.ts'
import { versionOf } from './store.ts'

export interface MemoryStoreOptions {
  /** Upper bound on the bytes of keys and values held; least recently used go first. */
  maxBytes: number
  clock?: () => number
}

/**
 * The in-process stand-in for Redis when REDIS_URL is unset: the same
 * interface and TTL semantics, bounded in bytes with LRU eviction (lru-cache,
 * each entry sized as its key plus its value).
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory' as const
  private readonly slots: LRUCache<string, Buffer>
  private readonly bus = new EventEmitter()

  constructor (options: MemoryStoreOptions) {
    if (!(options.maxBytes > 0)) throw new Error('memory store maxBytes must be positive')
    const clock = options.clock ?? Date.now
    this.slots = new LRUCache<string, Buffer>({
      maxSize: options.maxBytes,
      sizeCalculation: (value, key) => Math.max(1, key.length + value.length),
      // Every read asks the clock (an injected one too); an expired entry is deleted when read.
      ttlResolution: 0,
      perf: { now: clock }
    })
    this.bus.setMaxListeners(0)
  }

  private write (key: string, value: Buffer, ttlMs: number): void {
    // Larger than the whole store: not stored, and nothing else is evicted for it.
    if (key.length + value.length > this.slots.maxSize) {
      this.slots.delete(key)
      return
    }
    // lru-cache holds an entry until its age is past its TTL, Redis until it reaches it: one ms less is Redis's expiry.
    this.slots.set(key, value, { ttl: Math.max(1, ttlMs - 1) })
  }

  async get (key: string): Promise<Buffer | null> {
    return this.slots.get(key) ?? null
  }

  async setIfNewer (key: string, value: Buffer, version: number, ttlMs: number): Promise<boolean> {
    const current = this.slots.get(key)
    if (current !== undefined && versionOf(current) >= version) return false
    this.write(key, value, ttlMs)
    return true
  }

  async set (key: string, value: string, ttlMs: number): Promise<void> {
    this.write(key, Buffer.from(value), ttlMs)
  }

  async del (key: string): Promise<number> {
    return this.slots.delete(key) ? 1 : 0
  }

  async acquireLock (key: string, token: string, ttlMs: number): Promise<boolean> {
    if (this.slots.get(key) !== undefined) return false
    this.write(key, Buffer.from(token), ttlMs)
    return true
  }

  async releaseLock (key: string, token: string): Promise<boolean> {
    const value = this.slots.get(key)
    if (value === undefined || value.toString() !== token) return false
    return this.slots.delete(key)
  }

  async incrWindow (key: string, windowMs: number): Promise<{ count: number, ttlMs: number }> {
    const value = this.slots.get(key)
    if (value === undefined) {
      this.write(key, Buffer.from('1'), windowMs)
      return { count: 1, ttlMs: windowMs }
    }
    const count = Number(value.toString()) + 1
    // The window keeps its expiry.
    this.slots.set(key, Buffer.from(String(count)), { noUpdateTTL: true })
    return { count, ttlMs: Math.max(0, this.slots.getRemainingTTL(key) + 1) }
  }

  async scanDelete (match: string): Promise<number> {
    const pattern = globToRegExp(match)
    let deleted = 0
    for (const key of this.keys()) {
      if (pattern.test(key) && this.slots.delete(key)) deleted++
    }
    return deleted
  }

  async publish (channel: string, message: string): Promise<void> {
    // Asynchronous like a real broker: a publisher never runs subscribers inline.
    setImmediate(() => this.bus.emit(channel, message))
  }

  async subscribe (channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>> {
    this.bus.on(channel, onMessage)
    return async () => { this.bus.off(channel, onMessage) }
  }

  async ping (): Promise<void> {}

  async info (): Promise<{ keys: number, memoryUsedBytes: number }> {
    this.slots.purgeStale()
    return { keys: this.slots.size, memoryUsedBytes: this.slots.calculatedSize }
  }

  /** Keys in the store, for pattern deletion; expired ones are skipped. */
  keys (): string[] {
    return [...this.slots.keys()].filter(key => this.slots.has(key))
  }

  async close (): Promise<void> {
    this.bus.removeAllListeners()
    this.slots.clear()
  }
}

/** Redis glob (`*`, `?`, `[...]`, `\\x`) as an anchored regular expression. */
export function globToRegExp (glob: string): RegExp {
  let out = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*') out += '.*'
    else if (c === '?') out += '.'
    else if (c === '\\' && i + 1 < glob.length) out += escape(glob[++i])
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end === -1) { out += '\\['; continue }
      let body = glob.slice(i + 1, end).replace(/\\/g, '\\\\')
      if (body.startsWith('^')) body = '^' + body.slice(1)
      out += `[${body}]`
      i = end
    } else out += escape(c)
  }
  return new RegExp(`^${out}$`, 's')
}

function escape (c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}
