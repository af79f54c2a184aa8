/**
 * The glob a cache-pattern delete may use: confined to the namespace. A
 * pattern that already starts with `{prefix}:` is taken as is; any other is
 * taken relative to it. Redis MATCH anchors the whole key, so no glob can
 * reach outside `{prefix}:`.
 */
export function namespacedMatch (prefix: string, pattern: string): string {
  return pattern.startsWith(`${prefix}:`) ? pattern : `${prefix}:${pattern}`
}

export const PERIOD_DAYS = { '1d': 1, '7d': 7, '30d': 30 } as const
export type Period = keyof typeof PERIOD_DAYS

/** "2.4M"-style, as redis-cli's used_memory_human. */
export function humanBytes (bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)}${units[unit]}`
}
