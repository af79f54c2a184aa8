import { createHash } from 'node:crypto'

export type Classification = 'primary' | 'hybrid' | 'unresolved'

/** A user's classification result, as the public route accepts it. */
export interface Profile {
  classification: Classification
  primary?: string | null
  hybrid?: string[] | null
  percentages: Record<string, number>
}

/** The profile as it takes part in the cache key: the fields that shape a narrative. */
export interface NormalizedProfile {
  classification: Classification
  primary?: string
  hybrid?: string[]
  percentages: Record<string, number>
}

/** Percentages are floored to 0.5 buckets: 42.3 and 42.4 tell the same story. */
export function bucket (value: number): number {
  return Math.floor(value * 2) / 2
}

export function normalizeProfile (profile: Profile): NormalizedProfile {
  const percentages: Record<string, number> = {}
  for (const name of Object.keys(profile.percentages).sort()) {
    const value = profile.percentages[name]
    if (value === null || value === undefined) continue
    percentages[name] = bucket(value)
  }
  const normalized: NormalizedProfile = { classification: profile.classification, percentages }
  if (profile.primary !== null && profile.primary !== undefined) normalized.primary = profile.primary
  if (profile.hybrid !== null && profile.hybrid !== undefined) normalized.hybrid = [...profile.hybrid]
  return normalized
}

/**
 * Canonical JSON of a normalized profile: keys sorted at every level, no
 * whitespace, percentages always written with one decimal (42 -> 42.0) so the
 * text matches the contract's example and one value has exactly one spelling.
 * Strings go through JSON.stringify, so no delimiter in a name can fake structure.
 */
export function canonicalJson (profile: NormalizedProfile): string {
  const parts: string[] = []
  const keys = Object.keys(profile).sort() as Array<keyof NormalizedProfile>
  for (const key of keys) {
    const value = profile[key]
    if (value === undefined) continue
    let text: string
    if (key === 'percentages') {
      const entries = Object.keys(value as Record<string, number>).sort()
        .map(name => `${JSON.stringify(name)}:${(value as Record<string, number>)[name].toFixed(1)}`)
      text = `{${entries.join(',')}}`
    } else {
      text = JSON.stringify(value)
    }
    parts.push(`${JSON.stringify(key)}:${text}`)
  }
  return `{${parts.join(',')}}`
}

export function sha1Hex (text: string): string {
  return createHash('sha1').update(text).digest('hex')
}

/**
 * The profile part of the key. The canonical JSON is a complete object, so no
 * suffix can be mistaken for part of it: appending the locale is unambiguous.
 */
export function profileHash (profile: NormalizedProfile, locale: string): string {
  return sha1Hex(canonicalJson(profile) + normalizeLocale(locale))
}

/** BCP 47 tags are case-insensitive; one spelling per locale keeps one entry per locale. */
export function normalizeLocale (locale: string): string {
  return locale.toLowerCase()
}

/** The systems a profile names, most prominent first: for analytics and prose. */
export function systemsByWeight (profile: NormalizedProfile): Array<{ name: string, percent: number }> {
  return Object.entries(profile.percentages)
    .map(([name, percent]) => ({ name, percent }))
    .sort((a, b) => b.percent - a.percent || (a.name < b.name ? -1 : 1))
}
