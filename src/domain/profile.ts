import { hash } from 'node:crypto'
import { canonicalName, type SystemCatalogue } from './systems.ts'

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

/**
 * A request that cannot be made canonical, or that breaks a domain rule: a
 * 400 naming the field (`profile…` or `locale`). Pure domain: the service
 * turns it into the HTTP error.
 */
export class RefusedInputError extends Error {
  override readonly name: string = 'RefusedInputError'
  readonly code = 'NARR_REFUSED_INPUT'
  readonly field: 'profile' | 'locale'

  constructor (field: 'profile' | 'locale', message: string) {
    super(message)
    this.field = field
  }
}

function refuse (message: string): never {
  throw new RefusedInputError('profile', message)
}

/** A name as the key carries it: its catalogue spelling (or refused), else its trimmed spelling. */
function nameOf (field: string, name: string, systems: SystemCatalogue | undefined): string {
  if (systems === undefined) return canonicalName(name)
  const spelling = systems.spellingOf(name)
  if (spelling === undefined) refuse(`${field} names an unknown system '${name}'`)
  return spelling
}

/**
 * One profile per meaning: names trimmed (and, with a catalogue, matched to
 * its spelling), a name given twice refused, percentages floored to 0.5
 * buckets with the entries that bucket to 0 dropped (an extra `"Zeta": 0`
 * says nothing), null and undefined removed, the hybrid list in one order
 * (its order carries no meaning). A field the classification does not use is
 * refused, not ignored: `primary` only with "primary", `hybrid` only with
 * "hybrid". Throws RefusedInputError naming the field.
 */
export function normalizeProfile (profile: Profile, systems?: SystemCatalogue): NormalizedProfile {
  const hasPrimary = profile.primary !== null && profile.primary !== undefined
  const hasHybrid = profile.hybrid !== null && profile.hybrid !== undefined
  if (hasPrimary && profile.classification !== 'primary') refuse('profile.primary is only allowed when profile.classification is "primary"')
  if (hasHybrid && profile.classification !== 'hybrid') refuse('profile.hybrid is only allowed when profile.classification is "hybrid"')

  const shares = new Map<string, { given: string, value: number }>()
  for (const given of Object.keys(profile.percentages)) {
    const value = profile.percentages[given]
    if (value === null || value === undefined) continue
    const name = nameOf('profile.percentages', given, systems)
    const twice = shares.get(name)
    if (twice !== undefined) refuse(`profile.percentages names '${name}' twice ('${twice.given}' and '${given}')`)
    shares.set(name, { given, value: bucket(value) })
  }
  const percentages: Record<string, number> = {}
  for (const name of [...shares.keys()].sort()) {
    const { value } = shares.get(name) as { value: number }
    if (value > 0) percentages[name] = value
  }
  const normalized: NormalizedProfile = { classification: profile.classification, percentages }
  if (hasPrimary) normalized.primary = nameOf('profile.primary', profile.primary as string, systems)
  if (hasHybrid) {
    const names = (profile.hybrid as string[]).map(given => nameOf('profile.hybrid', given, systems))
    const sorted = [...names].sort()
    const twice = sorted.find((name, i) => i > 0 && sorted[i - 1] === name)
    if (twice !== undefined) refuse(`profile.hybrid names '${twice}' twice`)
    normalized.hybrid = sorted
  }
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
  // crypto.hash: one call, no Hash object (half the time of createHash warm, and
  // about 40 µs against 52 after an idle wait, on a miss's path).
  return hash('sha1', text)
}

/**
 * The profile part of the key. The canonical JSON is a complete object, so no
 * suffix can be mistaken for part of it: appending the locale is unambiguous.
 * The locale is its canonical tag (canonicalLocale), so one locale is one key.
 */
export function profileHash (profile: NormalizedProfile, locale: string): string {
  return sha1Hex(canonicalJson(profile) + locale)
}

/** The systems a profile names, most prominent first: for analytics and prose. */
export function systemsByWeight (profile: NormalizedProfile): Array<{ name: string, percent: number }> {
  return Object.entries(profile.percentages)
    .map(([name, percent]) => ({ name, percent }))
    .sort((a, b) => b.percent - a.percent || (a.name < b.name ? -1 : 1))
}
