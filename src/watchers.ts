/** Listeners by key, for the live feeds of builds under way (narrative text, chat chunks). */
export class Watchers<T> {
  private readonly byKey = new Map<string, Set<(item: T) => void>>()

  /** Adds a listener; returns the function that removes it. */
  add (key: string, listener: (item: T) => void): () => void {
    let set = this.byKey.get(key)
    if (set === undefined) {
      set = new Set()
      this.byKey.set(key, set)
    }
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.byKey.get(key) === set) this.byKey.delete(key)
    }
  }

  /** Calls every listener of the key; one that throws does not stop the others. */
  notify (key: string, item: T): void {
    for (const listener of this.byKey.get(key) ?? []) {
      try { listener(item) } catch {}
    }
  }
}
