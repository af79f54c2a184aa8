/**
 * One piece of work per key in this process: a call for a key already being
 * worked on joins that work's promise instead of starting its own.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>()

  /** The work under way for `key`, if any. */
  current (key: string): Promise<T> | undefined {
    return this.inflight.get(key)
  }

  /** Starts `work` as the one for `key`; it is forgotten once it settles. */
  lead (key: string, work: () => Promise<T>): Promise<T> {
    const promise = work().finally(() => {
      if (this.inflight.get(key) === promise) this.inflight.delete(key)
    })
    this.inflight.set(key, promise)
    return promise
  }

  get size (): number {
    return this.inflight.size
  }
}
