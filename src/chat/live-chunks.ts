import { Watchers } from '../watchers.ts'

/**
 * Chunks written so far by the builds under way in this process, per key: a
 * request for a key being built joins it live, first getting every chunk
 * written so far, then each new one. Only this process's builds: a request
 * that waits on another instance's build gets the stored stream once it lands.
 */
export class LiveChunks {
  private readonly written = new Map<string, string[]>()
  private readonly watchers = new Watchers<string>()

  begin (key: string): void {
    this.written.set(key, [])
  }

  push (key: string, data: string): void {
    const list = this.written.get(key)
    if (list === undefined) return
    list.push(data)
    this.watchers.notify(key, data)
  }

  end (key: string): void {
    this.written.delete(key)
  }

  building (key: string): boolean {
    return this.written.has(key)
  }

  /** Calls `listener` with what was written so far, then with each new chunk; returns the function that stops it. */
  watch (key: string, listener: (data: string) => void): () => void {
    const stop = this.watchers.add(key, listener)
    for (const data of this.written.get(key) ?? []) listener(data)
    return stop
  }
}
