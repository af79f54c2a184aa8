import { LOCALE_PATTERN, RESERVED_NAMES, SYSTEM_NAME_PATTERN, type NarrativeRequest } from './narrative.ts'

const NAME = new RegExp(SYSTEM_NAME_PATTERN)
const LOCALE = new RegExp(LOCALE_PATTERN)
const PROFILE_FIELDS = new Set(['classification', 'primary', 'hybrid', 'percentages'])
const CLASSIFICATIONS = new Set(['primary', 'hybrid', 'unresolved'])

function isName (value: unknown): value is string {
  return typeof value === 'string' && value.length <= 40 && NAME.test(value) && !RESERVED_NAMES.includes(value)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The request schema (NarrativeRequestSchema) for a profile and locale read
 * back from the database rather than from a request: a stored row may predate
 * today's schema, or have been written by hand. Only what the schema says; the
 * domain rules come after (canonicalRequest). Written out because the route's
 * validator (Ajv) lives inside Fastify, and TypeBox's own checker cannot read
 * this schema's enum and propertyNames.
 */
export function isStoredRequest (value: { profile: unknown, locale?: unknown }): value is NarrativeRequest {
  const { profile, locale } = value
  if (typeof locale !== 'string' || locale.length > 35 || !LOCALE.test(locale)) return false
  if (!isRecord(profile) || !Object.keys(profile).every(field => PROFILE_FIELDS.has(field))) return false
  if (typeof profile.classification !== 'string' || !CLASSIFICATIONS.has(profile.classification)) return false
  if (profile.primary !== undefined && !isName(profile.primary)) return false
  const hybrid = profile.hybrid
  if (hybrid !== undefined && !(Array.isArray(hybrid) && hybrid.length >= 2 && hybrid.length <= 4 && hybrid.every(isName) && new Set(hybrid).size === hybrid.length)) return false
  const percentages = profile.percentages
  if (!isRecord(percentages)) return false
  const names = Object.keys(percentages)
  if (names.length < 1 || names.length > 32) return false
  return names.every(name => {
    const share = percentages[name]
    return isName(name) && typeof share === 'number' && Number.isFinite(share) && share >= 0 && share <= 100
  })
}
