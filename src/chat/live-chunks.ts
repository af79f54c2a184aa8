import { Watchers } from '../watchers.ts'

/** One build's chunks as they come, from this process's build or relayed from another instance's. */
export interface LiveFeed {
  push: (data: string) => void
  end: () => void
}

/** A chunk, and which feed of its key it came from (a request keeps to the feed it started with). */
export interface LiveChunk {
  data: string
  feed: number
}

/**
 * Chunks written so far by the builds under way, per key: a request for a
 * key being built joins it live, first getting every chunk written so far,
 * then each new one. A feed is this process's build, or another instance's
 * relayed here (src/stream-relay.ts). A newer feed for a key replaces the
 * older (this process builds after all): the older one's pushes are ignored.
 */
export class LiveChunks {
  private readonly current = new Map<string, { chunks: string[], feed: number, relayed: boolean }>()
  private readonly watchers = new Watchers<LiveChunk>()
  private feeds = 0

  begin (key: string, relayed = false): LiveFeed {
    const feed = ++this.feeds
    const state = { chunks: [] as string[], feed, relayed }
    this.current.set(key, state)
    return {
      push: data => {
        if (this.current.get(key) !== state) return
        state.chunks.push(data)
        this.watchers.notify(key, { data, feed })
      },
      end: () => {
        if (this.current.get(key) === state) this.current.delete(key)
      }
    }
  }

  /** True while this process builds the key. */
  building (key: string): boolean {
    const state = this.current.get(key)
    return state !== undefined && !state.relayed
  }

  /** True while another instance's build of the key is relayed here. */
  relayed (key: string): boolean {
    return this.current.get(key)?.relayed === true
  }

  /** Calls `listener` with what was written so far, then with each new chunk; returns the function that stops it. */
  watch (key: string, listener: (chunk: LiveChunk) => void): () => void {
    const stop = this.watchers.add(key, listener)
    const state = this.current.get(key)
    for (const data of state?.chunks ?? []) listener({ data, feed: state?.feed ?? 0 })
    return stop
  }
}
