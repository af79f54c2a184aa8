// PostgreSQL refuses NUL in text and jsonb, and jsonb refuses lone UTF-16
// surrogates: one such character would fail a whole analytics batch.

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g
/** The same, without the g flag: test() on a global regex would remember where it stopped. */
const HAS_LONE_SURROGATE = new RegExp(LONE_SURROGATE.source)

/** The string as PostgreSQL accepts it, cut to `max` characters. */
export function cleanText (value: string, max = 1000): string {
  let s = value.length > max ? value.slice(0, max) : value
  if (s.includes('\u0000')) s = s.replaceAll('\u0000', '')
  return s.replace(LONE_SURROGATE, '\ufffd')
}

/** cleanText, or null for anything that is not a non-empty string. */
export function optionalText (value: unknown, max = 1000): string | null {
  if (typeof value !== 'string') return null
  const s = cleanText(value, max)
  return s === '' ? null : s
}

/**
 * The string itself when PostgreSQL can store it unchanged (no NUL, no lone
 * surrogate, at most `max` characters), else null. For identifiers, where
 * cleaning would merge two of them into one (`a\u0000b` and `ab` would be
 * one user, and deleting one would delete both): such a value is not
 * stored, and nothing stored can match it.
 */
export function exactText (value: unknown, max = 1000): string | null {
  if (typeof value !== 'string' || value === '' || value.length > max) return null
  return value.includes('\u0000') || HAS_LONE_SURROGATE.test(value) ? null : value
}

/** A whole number within PostgreSQL's integer range, or null. */
export function optionalInt (value: unknown): number | null {
  if (typeof value !== 'number' || !Number.isFinite(value)) return null
  return Math.min(2_147_483_647, Math.max(-2_147_483_648, Math.round(value)))
}

/** A deep copy of a JSON value with every string (keys too) cleaned; non-JSON values dropped. */
export function cleanJson (value: unknown, depth = 0): unknown {
  if (depth > 32) return null
  if (typeof value === 'string') return cleanText(value, 100_000)
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value === 'boolean' || value === null) return value
  if (Array.isArray(value)) return value.map(v => cleanJson(v, depth + 1) ?? null)
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const c = cleanJson(v, depth + 1)
      if (c !== undefined) out[cleanText(k, 1000)] = c
    }
    return out
  }
  return undefined
}

/** A limit clamped to 1..max. */
export function clampLimit (limit: number, max = 1000): number {
  if (!Number.isFinite(limit)) return max
  return Math.min(max, Math.max(1, Math.floor(limit)))
}
