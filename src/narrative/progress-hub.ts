import { Watchers } from '../watchers.ts'

type Listener = (newText: string) => void

/**
 * What builders in this process have written so far, per key, for streaming
 * requests: a watcher gets the text so far at once, then each new piece, and
 * may start watching before the build begins. Pieces are passed on as they
 * come, never the whole text again, so a long build costs each watcher time in
 * proportion to its length, not to its square.
 */
export class ProgressHub {
  private readonly texts = new Map<string, string>()
  private readonly watchers = new Watchers<string>()

  watch (key: string, listener: Listener): () => void {
    const stop = this.watchers.add(key, listener)
    const current = this.texts.get(key)
    if (current !== undefined && current !== '') listener(current)
    return stop
  }

  begin (key: string): void {
    this.texts.set(key, '')
  }

  /** Adds a piece to the key's text (V8 joins the pieces only when a late watcher reads them all). */
  update (key: string, newText: string): void {
    const sofar = this.texts.get(key)
    if (sofar === undefined) return
    this.texts.set(key, sofar + newText)
    this.watchers.notify(key, newText)
  }

  end (key: string): void {
    this.texts.delete(key)
  }

  building (key: string): boolean {
    return this.texts.has(key)
  }
}
