import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Time limits on promises: one helper wherever the code waits for something
 * that may never answer (a close, a ping, a first open, a QUIT).
 *
 * Over timers/promises' cancellable setTimeout rather than
 * AbortSignal.timeout: the latter's timer is always unref'd and cannot be
 * cleared, so a close waiting on it let the process exit in the middle of the
 * wait (test/analytics-buffer.test.ts ended "unfinished" that way), and every
 * call would leave a timer pending until it fires. Here the timer is cleared
 * as soon as the promise settles, and is ref'd unless `ref: false`.
 */

/** What withTimeout rejects with when the time is up. */
export class TimeoutError extends Error {
  override readonly name: string = 'TimeoutError'
  readonly code = 'NARR_TIMEOUT'
}

export interface TimeoutOptions {
  /** Rejection message; default `no answer within <ms> ms`. */
  message?: string
  /** false: the wait alone does not keep the process alive. Default true. */
  ref?: boolean
}

/** Settles like `promise`, or rejects with a TimeoutError once `ms` have passed. */
export async function withTimeout<T> (promise: Promise<T>, ms: number, options: TimeoutOptions = {}): Promise<T> {
  const cancel = new AbortController()
  const timeUp = sleep(ms, undefined, { signal: cancel.signal, ref: options.ref ?? true }).then(
    () => { throw new TimeoutError(options.message ?? `no answer within ${ms} ms`) },
    () => undefined as never // cancelled: the promise settled first
  )
  try {
    return await Promise.race([promise, timeUp])
  } finally {
    cancel.abort()
  }
}

/** True once `promise` has settled (fulfilled or rejected), false if `ms` passed first. Never rejects. */
export async function settledWithin (promise: Promise<unknown>, ms: number, options: Omit<TimeoutOptions, 'message'> = {}): Promise<boolean> {
  return await withTimeout(promise.then(() => true, () => true), ms, options).catch(() => false)
}
