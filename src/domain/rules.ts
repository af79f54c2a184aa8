import type { NormalizedProfile } from './profile.ts'

/** Largest total accepted: shares given with more precision than the buckets may add up to a little over 100. */
export const MAX_PERCENT_TOTAL = 100.5

/**
 * Rules a profile must follow beyond its schema. Returns the reason it breaks
 * one, or null. Checked on the normalized profile alone, the very thing the
 * cache key is made of: two requests that share a key are both valid or both
 * refused, so nothing one client sends can change what another one gets.
 */
export function profileRuleViolation (profile: NormalizedProfile): string | null {
  const names = Object.keys(profile.percentages)
  if (names.length === 0) return 'profile.percentages has no share of 0.5 or more'
  if (profile.classification === 'primary') {
    if (profile.primary === undefined) return 'profile.primary is required when classification is "primary"'
    if (!Object.hasOwn(profile.percentages, profile.primary)) return `profile.primary "${profile.primary}" is missing from profile.percentages (or its share is under 0.5)`
  }
  if (profile.classification === 'hybrid') {
    if (profile.hybrid === undefined) return 'profile.hybrid is required when classification is "hybrid"'
    const missing = profile.hybrid.filter(name => !Object.hasOwn(profile.percentages, name))
    if (missing.length > 0) return `profile.hybrid names missing from profile.percentages (or under 0.5): ${missing.join(', ')}`
  }
  let total = 0
  for (const name of names) total += profile.percentages[name]
  if (total > MAX_PERCENT_TOTAL) return `profile.percentages sum to ${total} once floored to 0.5 buckets, more than ${MAX_PERCENT_TOTAL}`
  return null
}
