import type { CachedNarrative } from '../narrative/codec.ts'
import { globToRegExp } from './memory-store.ts'
import { LruMap } from '../lru-map.ts'

export interface LocalTierOptions {
  /** Entries held at most; the least recently used go first. */
  maxEntries: number
  /**
   * How long an entry may be served from memory without asking Redis. Other
   * instances' writes and deletes are announced over pub/sub and evict at once;
   * this bounds how long a lost announcement can leave an old entry here.
   */
  ttlMs: number
  clock?: () => number
}

interface Slot { entry: CachedNarrative, expiresAt: number }

/**
 * The in-process first tier in front of Redis: decoded entries, bounded (LRU
 * by count), each trusted for at most `ttlMs`. A hit here costs no round trip.
 */
export class LocalTier {
  private readonly slots: LruMap<string, Slot>
  private readonly clock: () => number
  hits = 0
  invalidations = 0

  private readonly options: LocalTierOptions

  constructor (options: LocalTierOptions) {
    this.options = options
    if (!(options.maxEntries >= 1)) throw new Error('local tier maxEntries must be at least 1')
    if (!(options.ttlMs > 0)) throw new Error('local tier ttlMs must be positive')
    this.slots = new LruMap(options.maxEntries)
    this.clock = options.clock ?? Date.now
  }

  get (key: string): CachedNarrative | undefined {
    const slot = this.slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= this.clock()) {
      this.slots.delete(key)
      return undefined
    }
    this.hits++
    return slot.entry
  }

  set (key: string, entry: CachedNarrative): void {
    this.slots.set(key, { entry, expiresAt: this.clock() + this.options.ttlMs })
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
