interface Slot<V> { value: V, stamp: number }

/**
 * A Map bounded by count that forgets its least recently used entry first.
 * A Map keeps insertion order, so re-inserting on use keeps the least
 * recently used key first. The body memo, the in-process tier and the
 * negative cache all hold their entries in one.
 *
 * Re-inserting costs a delete and an insert, on every hit of a hot key. So
 * a use re-inserts only an entry that has drifted out of the most recent
 * half: one after which at least half the capacity was inserted or used.
 * An entry in the recent half is far from eviction anyway (eviction takes
 * the first entry, after which come maxEntries others), so an entry used at
 * least once every maxEntries / 2 insertions is never evicted. Up to 3
 * entries, this is exactly least recently used.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, Slot<V>>()
  /** Counts insertions and re-insertions: an entry's stamp is the count when it was last put at the end. */
  private clock = 0
  private readonly recentSpan: number

  readonly maxEntries: number

  constructor (maxEntries: number) {
    this.maxEntries = maxEntries
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new TypeError(`LruMap maxEntries must be a positive whole number, got ${maxEntries}`)
    this.recentSpan = Math.max(1, maxEntries >> 1)
  }

  get size (): number {
    return this.entries.size
  }

  /** The value, which becomes recently used. */
  get (key: K): V | undefined {
    const slot = this.entries.get(key)
    if (slot === undefined) return undefined
    if (this.clock - slot.stamp >= this.recentSpan) {
      this.entries.delete(key)
      slot.stamp = ++this.clock
      this.entries.set(key, slot)
    }
    return slot.value
  }

  /** The value, leaving the order as it is. */
  peek (key: K): V | undefined {
    return this.entries.get(key)?.value
  }

  /** Stores the value as the most recently used; past maxEntries, the least recently used goes. */
  set (key: K, value: V): void {
    this.entries.delete(key)
    this.entries.set(key, { value, stamp: ++this.clock })
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as K)
  }

  delete (key: K): boolean {
    return this.entries.delete(key)
  }

  keys (): IterableIterator<K> {
    return this.entries.keys()
  }
}
