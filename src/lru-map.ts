/**
 * A Map bounded by count that forgets its least recently used entry first.
 * A Map keeps insertion order, so re-inserting on use keeps the least
 * recently used key first. The body memo, the in-process tier and the
 * negative cache all hold their entries in one.
 */
export class LruMap<K, V> {
  private readonly entries = new Map<K, V>()

  constructor (readonly maxEntries: number) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new TypeError(`LruMap maxEntries must be a positive whole number, got ${maxEntries}`)
  }

  get size (): number {
    return this.entries.size
  }

  /** The value, which becomes the most recently used. */
  get (key: K): V | undefined {
    const value = this.entries.get(key)
    if (value !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, value)
    }
    return value
  }

  /** The value, leaving the order as it is. */
  peek (key: K): V | undefined {
    return this.entries.get(key)
  }

  /** Stores the value as the most recently used; past maxEntries, the least recently used goes. */
  set (key: K, value: V): void {
    this.entries.delete(key)
    this.entries.set(key, value)
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as K)
  }

  delete (key: K): boolean {
    return this.entries.delete(key)
  }

  keys (): IterableIterator<K> {
    return this.entries.keys()
  }
}
