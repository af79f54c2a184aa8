import { setTimeout as sleep } from 'node:timers/promises'
import { NarratorError } from './narrator.ts'

export interface RetryPolicy {
  attempts: number
  baseDelayMs: number
  maxDelayMs: number
  /** Hard deadline for all attempts together, waits included. */
  deadlineMs: number
}

export class DeadlineError extends NarratorError {
  override readonly name: string = 'DeadlineError'
  constructor (ms: number) { super(`no narrative within the ${ms} ms deadline`, false) }
}

/**
 * One call's signal: aborted at the deadline or when `outer` aborts, and
 * detached from `outer` by dispose(). Not AbortSignal.any: that keeps every
 * combined signal as a dependent of the long-lived outer one (the engine's
 * shutdown signal) for as long as the outer lives, about 1.5 KB a call
 * (nodejs/node#55351). Here the outer holds one listener per call in flight,
 * removed when the call ends, and the deadline is a timer that is cleared.
 */
function callSignal (deadlineMs: number, outer: AbortSignal | undefined): { signal: AbortSignal, deadlinePassed: () => boolean, dispose: () => void } {
  const controller = new AbortController()
  let passed = false
  const timer = setTimeout(() => {
    passed = true
    controller.abort(new DeadlineError(deadlineMs))
  }, deadlineMs)
  // Like AbortSignal.timeout: a deadline alone does not keep the process alive.
  timer.unref()
  const onOuterAbort = (): void => { controller.abort(outer?.reason) }
  if (outer?.aborted === true) controller.abort(outer.reason)
  else outer?.addEventListener('abort', onOuterAbort, { once: true })
  return {
    signal: controller.signal,
    deadlinePassed: () => passed,
    dispose: () => {
      clearTimeout(timer)
      outer?.removeEventListener('abort', onOuterAbort)
    }
  }
}

/**
 * Runs `attempt` until it succeeds, the attempts are spent, or the deadline
 * passes. Each attempt gets an AbortSignal that fires at the deadline (or when
 * the caller's signal does), so nothing outlives it. Waits are exponential with
 * full jitter; a server's Retry-After is honoured but capped by maxDelayMs and
 * by the time left, so a 429 can never make us wait past the deadline.
 */
export async function withRetry<T> (
  attempt: (signal: AbortSignal) => Promise<T>,
  policy: RetryPolicy,
  outer?: AbortSignal,
  random: () => number = Math.random
): Promise<T> {
  const started = Date.now()
  const call = callSignal(policy.deadlineMs, outer)
  const { signal } = call
  let lastError: unknown
  try {
    for (let i = 0; i < policy.attempts; i++) {
      if (signal.aborted) break
      try {
        return await attempt(signal)
      } catch (err) {
        lastError = err
        if (signal.aborted) break
        const retryable = err instanceof NarratorError ? err.retryable : true
        if (!retryable || i === policy.attempts - 1) break
        const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** i)
        const hinted = err instanceof NarratorError && err.retryAfterMs !== undefined ? Math.min(err.retryAfterMs, policy.maxDelayMs) : 0
        const wait = Math.max(hinted, Math.round(random() * backoff))
        const left = policy.deadlineMs - (Date.now() - started)
        if (wait >= left) break
        try {
          await sleep(wait, undefined, { signal })
        } catch {
          break
        }
      }
    }
  } finally {
    call.dispose()
  }
  if (call.deadlinePassed()) throw new DeadlineError(policy.deadlineMs)
  throw lastError ?? new DeadlineError(policy.deadlineMs)
}
