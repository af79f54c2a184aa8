import { LRUCache } from 'lru-cache'
import { globToRegExp } from './memory-store.ts'
import type { Entry } from './types.ts'

export interface LocalTierOptions {
  /** Entries held at most; the least recently used go first. */
  maxEntries: number
  /**
   * How long an entry may be served from memory without asking the store.
   * Other instances' writes and deletes are announced over pub/sub and evict
   * at once; this bounds how long a lost announcement can leave an old entry here.
   */
  ttlMs: number
  /** Bytes held at most, as `sizeOf` counts them (values that vary in size: a long one must not crowd memory). */
  maxBytes?: number
  sizeOf?: (entry: Entry<unknown>) => number
  clock?: () => number
}

/**
 * The in-process first tier in front of a remote store: decoded entries,
 * bounded by count (and by bytes when asked; lru-cache), each trusted for at most `ttlMs`. A hit here
 * costs no round trip.
 */
export class LocalTier<V> {
  private readonly slots: LRUCache<string, Entry<V>>
  hits = 0
  invalidations = 0

  constructor (options: LocalTierOptions) {
    if (!(options.maxEntries >= 1)) throw new Error('local tier maxEntries must be at least 1')
    if (!(options.ttlMs > 0)) throw new Error('local tier ttlMs must be positive')
    const clock = options.clock ?? Date.now
    // ttlResolution 0: every read asks the clock (an injected one included), none is cached.
    if (options.maxBytes !== undefined && !(options.maxBytes >= 1 && options.sizeOf !== undefined)) throw new Error('local tier maxBytes must be at least 1, with sizeOf')
    const sizeOf = options.sizeOf
    const bySize = options.maxBytes !== undefined && sizeOf !== undefined
      ? { maxSize: options.maxBytes, sizeCalculation: (entry: Entry<V>) => Math.max(1, sizeOf(entry)) }
      : {}
    this.slots = new LRUCache({ max: options.maxEntries, ttl: options.ttlMs, ttlResolution: 0, perf: { now: clock }, ...bySize })
  }

  get (key: string): Entry<V> | undefined {
    const entry = this.slots.get(key)
    if (entry !== undefined) this.hits++
    return entry
  }

  set (key: string, entry: Entry<V>): void {
    this.slots.set(key, entry)
  }

  delete (key: string): void {
    if (this.slots.delete(key)) this.invalidations++
  }

  /** Evicts every key matching a Redis glob (a pattern delete elsewhere). */
  deleteMatching (glob: string): void {
    const pattern = globToRegExp(glob)
    for (const key of [...this.slots.keys()]) if (pattern.test(key)) this.delete(key)
  }

  get size (): number {
    return this.slots.size
  }
}
