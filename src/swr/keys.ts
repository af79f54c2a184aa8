/**
 * The engine's own keys beside a value's key. Locks live outside the value's
 * namespace, so a pattern delete of values never frees a lock.
 */
export function lockKey (key: string): string {
  return `lock:${key}`
}

/**
 * Written by a builder whose build failed, just before it frees the lock, for
 * waiters that take the freed lock before the 'failed' announcement reaches
 * them. The braces make Redis Cluster hash only the lock's name (value keys
 * hold no braces of their own), so the marker sits in the lock's slot: its
 * write and the release go to one node on one connection, and keep their order.
 */
export function failedBuildKey (key: string): string {
  return `failed:{${lockKey(key)}}`
}

export function refreshLockKey (key: string): string {
  return `refresh:${key}`
}

/** The channel on which builders announce that a key landed (or failed), and invalidations are broadcast. */
export function announcementChannel (prefix: string): string {
  return `${prefix}:ready`
}
