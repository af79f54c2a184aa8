import { canonicalLocale, servedLocale } from './locale.ts'
import { normalizeProfile, RefusedInputError, type NormalizedProfile, type Profile } from './profile.ts'
import { profileRuleViolation } from './rules.ts'
import type { SystemCatalogue } from './systems.ts'

/** What the operator narrows requests to (SYSTEMS, LOCALES); both optional. */
export interface CanonicalOptions {
  systems?: SystemCatalogue
  /** Canonical tags (canonicalLocale) of the served locales. */
  locales?: ReadonlySet<string>
}

/** A request as the cache key is made of it. */
export interface CanonicalRequest {
  profile: NormalizedProfile
  locale: string
}

/**
 * The one canonical form of a request's profile and locale, checked against
 * every domain rule, or a RefusedInputError naming the field. The route, the
 * service and pre-warm all go through here, so what is refused on the way in
 * is refused when rebuilt from storage too.
 */
export function canonicalRequest (profile: Profile, locale: string, options: CanonicalOptions = {}): CanonicalRequest {
  const tag = canonicalLocale(locale)
  if (tag === undefined) throw new RefusedInputError('locale', `locale '${locale}' is not a well-formed BCP 47 language tag`)
  let served = tag
  if (options.locales !== undefined) {
    const match = servedLocale(tag, options.locales)
    if (match === undefined) throw new RefusedInputError('locale', `locale '${locale}' is not served here (served: ${[...options.locales].join(', ')})`)
    served = match
  }
  const normalized = normalizeProfile(profile, options.systems)
  const violation = profileRuleViolation(normalized)
  if (violation !== null) throw new RefusedInputError('profile', violation)
  return { profile: normalized, locale: served }
}
