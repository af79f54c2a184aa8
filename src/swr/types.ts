/**
 * The engine's vocabulary. Values are opaque to it: an adapter (a narrative,
 * a chat completion) says how to build one, what stands in when that fails,
 * and how an entry becomes bytes (an EntryCodec).
 */

/**
 * How an answer was found:
 * - hit: a fresh entry; stale: an older one, served while a refresh runs;
 * - durable: not in the store, found in the durable tier (no build);
 * - miss: built for this call; coalesced: built for another call this one waited on;
 * - fallback: the adapter's stand-in (the build failed, or the store was down and
 *   the value was built without it: `built` tells which).
 */
export type CacheStatus = 'hit' | 'stale' | 'durable' | 'miss' | 'coalesced' | 'fallback'

/** A cached value and its times (ms since the epoch). */
export interface Entry<V> {
  value: V
  createdAt: number
  /** When the value was last written; its age is measured from it. */
  refreshedAt: number
  /** From this moment the entry is stale: served, and refreshed in the background. */
  staleAfter: number
}

export interface Resolution<V> {
  status: CacheStatus
  key: string
  value: V
  /** When the value was written (ms). */
  writtenAt: number
  /** True when this call ran the build (and so paid for it). */
  built: boolean
  /** How long the build took, when it ran for this call. */
  buildMs?: number
}

/** Why a build runs: a caller waits for it, or it refreshes a stale entry in the background. */
export type BuildReason = 'request' | 'refresh'

export interface BuildContext {
  reason: BuildReason
  /** Aborted when the engine closes and its grace period is over. */
  signal: AbortSignal
  /** False on the path taken because the store just failed (a permit kept in the store need not be waited on). */
  storeHealthy: boolean
}

/** What getOrBuild needs to make a value for a key that has none. */
export interface BuildSpec<V> {
  build: (context: BuildContext) => Promise<V>
  /**
   * Runs once before a request's build (never before a refresh, never when the
   * call waits for another's build). Throwing refuses the build: the call
   * rejects with BuildRefusedError, whose `reason` is what was thrown, and the
   * key is freed at once for the next caller.
   */
  admit?: (context: { storeHealthy: boolean }) => Promise<void>
  /**
   * The stand-in when the build fails or waiting for another's gives up:
   * answered with status `fallback`, never stored. Without it, such a call
   * rejects with BuildFailedError.
   */
  fallback?: () => V
  /**
   * Called when the call starts waiting for a build whose lock is held
   * elsewhere (most often another instance): an adapter may follow that
   * build's progress meanwhile. Never called for the build this call runs.
   */
  onWait?: () => void
}

/** The admit hook said no: `reason` is what it threw. */
export class BuildRefusedError extends Error {
  override readonly name: string = 'BuildRefusedError'
  readonly reason: unknown

  constructor (reason: unknown) {
    super('build not admitted')
    this.reason = reason
  }
}

/** A build failed (or was waited for in vain) and the spec has no fallback. */
export class BuildFailedError extends Error {
  override readonly name: string = 'BuildFailedError'
  readonly code = 'SWR_BUILD_FAILED'
}

export function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
