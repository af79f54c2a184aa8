import type { NormalizedProfile } from './profile.js'

/** Largest total accepted: bucketed percentages of a real profile may round up a little. */
export const MAX_PERCENT_TOTAL = 100.5

/**
 * Rules a profile must follow beyond its schema. Returns the reason it breaks
 * one, or null. Checked on the raw percentages' bucketed values.
 */
export function profileRuleViolation (profile: NormalizedProfile, rawTotal: number): string | null {
  if (profile.classification === 'primary') {
    if (profile.primary === undefined) return 'profile.primary is required when classification is "primary"'
    if (!Object.hasOwn(profile.percentages, profile.primary)) return `profile.primary "${profile.primary}" is missing from profile.percentages`
  }
  if (profile.classification === 'hybrid') {
    if (profile.hybrid === undefined) return 'profile.hybrid is required when classification is "hybrid"'
    const missing = profile.hybrid.filter(name => !Object.hasOwn(profile.percentages, name))
    if (missing.length > 0) return `profile.hybrid names missing from profile.percentages: ${missing.join(', ')}`
  }
  if (rawTotal > MAX_PERCENT_TOTAL) return `profile.percentages sum to ${Math.round(rawTotal * 100) / 100}, more than ${MAX_PERCENT_TOTAL}`
  return null
}
