/**
 * What the cache engine needs from a key-value store. Redis (single node or
 * Cluster) and the in-process store implement it with the same semantics:
 * TTLs in milliseconds, newer-wins writes, token-checked locks, and a
 * broadcast channel. Every method may reject; none may hang past the store's
 * own command timeout.
 */
export interface CacheStore {
  readonly kind: 'memory' | 'redis' | 'cluster'
  get (key: string): Promise<Buffer | null>
  /**
   * Stores `value` under `key` unless the entry already there carries a version
   * at least as new. Returns true when written. `version` is a millisecond
   * timestamp taken when the build started, so a builder that was paused past
   * its lock never replaces what a later builder wrote.
   */
  setIfNewer (key: string, value: Buffer, version: number, ttlMs: number): Promise<boolean>
  /** Plain write with TTL; for small bookkeeping values. */
  set (key: string, value: string, ttlMs: number): Promise<void>
  del (key: string): Promise<number>
  /** SET key token NX PX ttl. */
  acquireLock (key: string, token: string, ttlMs: number): Promise<boolean>
  /** Deletes the lock only if it still holds `token`. */
  releaseLock (key: string, token: string): Promise<boolean>
  /** INCR with a TTL set when the counter is created: a fixed-window counter. */
  incrWindow (key: string, windowMs: number): Promise<{ count: number, ttlMs: number }>
  /**
   * Deletes every key matching a Redis glob (SCAN MATCH + UNLINK in batches,
   * on every master of a Cluster). Never KEYS. Returns how many were deleted.
   */
  scanDelete (match: string, batchSize: number): Promise<number>
  publish (channel: string, message: string): Promise<void>
  /** Starts listening; the returned function stops. */
  subscribe (channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>
  ping (): Promise<void>
  /** Number of keys and bytes used, as far as the store can tell. */
  info (): Promise<{ keys: number, memoryUsedBytes: number }>
  close (): Promise<void>
}

/** The stored form of a versioned value: 13 ASCII digits of version, then the payload. */
export const VERSION_DIGITS = 13

export function withVersion (version: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(String(Math.max(0, Math.floor(version))).padStart(VERSION_DIGITS, '0'), 'latin1'), payload])
}

/** The version of a stored value, or -1 when it has none a newer write should respect. */
export function versionOf (stored: Buffer): number {
  const text = stored.subarray(0, VERSION_DIGITS).toString('latin1')
  return /^[0-9]{13}$/.test(text) ? Number(text) : -1
}
