type Listener = (textSoFar: string) => void

/**
 * What builders in this process have written so far, per key, for streaming
 * requests: a watcher gets the text so far at once, then every update, and
 * may start watching before the build begins.
 */
export class ProgressHub {
  private readonly texts = new Map<string, string>()
  private readonly watchers = new Map<string, Set<Listener>>()

  watch (key: string, listener: Listener): () => void {
    let set = this.watchers.get(key)
    if (set === undefined) {
      set = new Set()
      this.watchers.set(key, set)
    }
    set.add(listener)
    const current = this.texts.get(key)
    if (current !== undefined && current !== '') listener(current)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.watchers.get(key) === set) this.watchers.delete(key)
    }
  }

  begin (key: string): void {
    this.texts.set(key, '')
  }

  update (key: string, textSoFar: string): void {
    this.texts.set(key, textSoFar)
    for (const listener of this.watchers.get(key) ?? []) {
      try { listener(textSoFar) } catch {}
    }
  }

  end (key: string): void {
    this.texts.delete(key)
  }

  building (key: string): boolean {
    return this.texts.has(key)
  }
}
