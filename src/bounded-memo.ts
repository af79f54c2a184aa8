/**
 * A memo of a pure function's results, bounded by count: the least recently
 * used entry goes first (a Map keeps insertion order; a hit re-inserts).
 */
export class BoundedMemo<K, V> {
  private readonly entries = new Map<K, V>()

  constructor (private readonly maxEntries: number) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new TypeError(`BoundedMemo maxEntries must be a positive whole number, got ${maxEntries}`)
  }

  get size (): number {
    return this.entries.size
  }

  /** The remembered value for `key`, or `compute(key)` remembered. */
  get (key: K, compute: (key: K) => V): V {
    const known = this.entries.get(key)
    if (known !== undefined) {
      this.entries.delete(key)
      this.entries.set(key, known)
      return known
    }
    const value = compute(key)
    this.entries.set(key, value)
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as K)
    return value
  }
}
