type Listener = (data: string) => void

/**
 * Chunks written so far by the builds under way in this process, per key: a
 * request for a key being built joins it live, first getting every chunk
 * written so far, then each new one. Only this process's builds: a request
 * that waits on another instance's build gets the stored stream once it lands.
 */
export class LiveChunks {
  private readonly written = new Map<string, string[]>()
  private readonly watchers = new Map<string, Set<Listener>>()

  begin (key: string): void {
    this.written.set(key, [])
  }

  push (key: string, data: string): void {
    const list = this.written.get(key)
    if (list === undefined) return
    list.push(data)
    for (const listener of this.watchers.get(key) ?? []) {
      try { listener(data) } catch {}
    }
  }

  end (key: string): void {
    this.written.delete(key)
  }

  building (key: string): boolean {
    return this.written.has(key)
  }

  /** Calls `listener` with what was written so far, then with each new chunk; returns the function that stops it. */
  watch (key: string, listener: Listener): () => void {
    let set = this.watchers.get(key)
    if (set === undefined) {
      set = new Set()
      this.watchers.set(key, set)
    }
    set.add(listener)
    for (const data of this.written.get(key) ?? []) listener(data)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.watchers.get(key) === set) this.watchers.delete(key)
    }
  }
}
