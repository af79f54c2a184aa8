// Tiny polling helpers shared by the server starters.

export const sleep = (ms: number): Promise<void> =>
  new Promise(resolve => setTimeout(resolve, ms))

/**
 * Polls `check` until it returns a truthy value or `timeoutMs` elapses.
 * Returns the truthy value; throws `onTimeout()` (or a generic error).
 * Exceptions thrown by `check` count as "not yet" so that connection
 * refusals during start-up do not abort the wait.
 */
export async function waitUntil<T> (
  check: () => Promise<T> | T,
  { timeoutMs = 10_000, intervalMs = 50, what = 'condition', onTimeout }: {
    timeoutMs?: number
    intervalMs?: number
    what?: string
    onTimeout?: (lastError: unknown) => Error
  } = {}
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v
    } catch (err) {
      lastError = err
    }
    if (Date.now() >= deadline) {
      throw onTimeout
        ? onTimeout(lastError)
        : new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
          (lastError ? `: ${String(lastError)}` : ''))
    }
    await sleep(intervalMs)
  }
}
