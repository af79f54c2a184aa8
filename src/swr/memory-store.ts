import { EventEmitter } from 'node:events'
import { LRUCache } from 'lru-cache'
import type { CacheStore } from './store.ts'
import { versionOf } from './store.ts'

export interface MemoryStoreOptions {
  /** Upper bound on the bytes of keys and values held; least recently used go first. */
  maxBytes: number
  clock?: () => number
}

interface Slot { value: Buffer, expiresAt: number }

/**
 * The in-process stand-in for Redis when REDIS_URL is unset: the same
 * interface and TTL semantics (a key expires when its TTL is reached, to the
 * millisecond), bounded in bytes with LRU eviction (lru-cache, each entry
 * sized as its key plus its value).
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory' as const
  private readonly slots: LRUCache<string, Slot>
  private readonly bus = new EventEmitter()
  private readonly clock: () => number

  constructor (options: MemoryStoreOptions) {
    if (!(options.maxBytes > 0)) throw new Error('memory store maxBytes must be positive')
    this.clock = options.clock ?? Date.now
    this.slots = new LRUCache<string, Slot>({ maxSize: options.maxBytes, sizeCalculation: (slot, key) => Math.max(1, key.length + slot.value.length) })
    this.bus.setMaxListeners(0)
  }

  /** The live slot (read as recently used), or undefined; an expired one is deleted. */
  private read (key: string): Slot | undefined {
    const slot = this.slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= this.clock()) {
      this.slots.delete(key)
      return undefined
    }
    return slot
  }

  private write (key: string, value: Buffer, ttlMs: number): void {
    // Larger than the whole store: not stored, and nothing else is evicted for it.
    if (key.length + value.length > this.slots.maxSize) {
      this.slots.delete(key)
      return
    }
    this.slots.set(key, { value, expiresAt: this.clock() + ttlMs })
  }

  async get (key: string): Promise<Buffer | null> {
    return this.read(key)?.value ?? null
  }

  async setIfNewer (key: string, value: Buffer, version: number, ttlMs: number): Promise<boolean> {
    const current = this.read(key)
    if (current !== undefined && versionOf(current.value) >= version) return false
    this.write(key, value, ttlMs)
    return true
  }

  async set (key: string, value: string, ttlMs: number): Promise<void> {
    this.write(key, Buffer.from(value), ttlMs)
  }

  async del (key: string): Promise<number> {
    return this.read(key) !== undefined && this.slots.delete(key) ? 1 : 0
  }

  async acquireLock (key: string, token: string, ttlMs: number): Promise<boolean> {
    if (this.read(key) !== undefined) return false
    this.write(key, Buffer.from(token), ttlMs)
    return true
  }

  async releaseLock (key: string, token: string): Promise<boolean> {
    const slot = this.read(key)
    if (slot === undefined || slot.value.toString() !== token) return false
    return this.slots.delete(key)
  }

  async incrWindow (key: string, windowMs: number): Promise<{ count: number, ttlMs: number }> {
    const slot = this.read(key)
    if (slot === undefined) {
      this.write(key, Buffer.from('1'), windowMs)
      return { count: 1, ttlMs: windowMs }
    }
    const count = Number(slot.value.toString()) + 1
    // The window keeps its expiry.
    this.slots.set(key, { value: Buffer.from(String(count)), expiresAt: slot.expiresAt })
    return { count, ttlMs: slot.expiresAt - this.clock() }
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
    // Expired entries go first (without touching the others' recency).
    const now = this.clock()
    for (const [key, slot] of [...this.slots.entries()]) if (slot.expiresAt <= now) this.slots.delete(key)
    return { keys: this.slots.size, memoryUsedBytes: this.slots.calculatedSize }
  }

  /** Keys in the store, for pattern deletion; expired ones are skipped. */
  keys (): string[] {
    const now = this.clock()
    return [...this.slots.entries()].filter(([, slot]) => slot.expiresAt > now).map(([key]) => key)
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
