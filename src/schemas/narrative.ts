import { Type, type Static } from '@sinclair/typebox'

/** Letters, digits, space, ' and -, starting with a letter; 1 to 40 characters. */
export const SYSTEM_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9 '\\-]{0,39}$"
/** A BCP 47 tag's shape, checked before the tag itself is (canonicalLocale). */
export const LOCALE_PATTERN = '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$'
/** Names that would reach Object.prototype if ever used as keys: refused outright. */
export const RESERVED_NAMES = ['constructor', 'prototype', '__proto__', 'hasOwnProperty', 'toString', 'valueOf']

/**
 * A user id: no control characters (U+0000 to U+001F, U+007F to U+009F) and no
 * lone surrogates. PostgreSQL cannot store NUL and jsonb no lone surrogate, so
 * the database layer would have to change such an id, and two ids would
 * become one user (`a\u0000b` and `ab`): they are refused instead, here and in
 * the admin route that deletes a user.
 */
export const USER_ID_PATTERN = '^[^\\u0000-\\u001f\\u007f-\\u009f\\ud800-\\udfff]+$'
export const USER_ID_DESCRIPTION = 'The caller\'s own label for its user, not an identity: the server neither checks nor authenticates it. ' +
  '1 to 64 characters, no control characters. Never part of the key nor stored in the cached value; it only feeds the analytics and the per-user index used for deletion.'

function systemName (description = 'A star system name') {
  return Type.String({ pattern: SYSTEM_NAME_PATTERN, minLength: 1, maxLength: 40, description })
}
const SystemName = systemName()

export const ProfileSchema = Type.Object({
  // An enum rather than a union of literals, so a bad value yields one error that lists the allowed ones.
  classification: Type.Unsafe<'primary' | 'hybrid' | 'unresolved'>({ type: 'string', enum: ['primary', 'hybrid', 'unresolved'], description: 'primary needs `primary`; hybrid needs `hybrid`' }),
  primary: Type.Optional(systemName('Required with classification "primary", refused with any other')),
  hybrid: Type.Optional(Type.Array(SystemName, { minItems: 2, maxItems: 4, uniqueItems: true, description: 'Required with classification "hybrid", refused with any other; the order carries no meaning' })),
  percentages: Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 100 }), {
    minProperties: 1,
    maxProperties: 32,
    propertyNames: { pattern: SYSTEM_NAME_PATTERN, not: { enum: RESERVED_NAMES } },
    description: '1 to 32 entries of system name to a percentage from 0 to 100; floored to 0.5 buckets, entries under 0.5 dropped; the floored shares may sum to 100.5 at most'
  })
}, {
  additionalProperties: false,
  // primary/hybrid required by classification: checked in the schema so the 400 names the field.
  // Each `if` requires classification too: without it an absent one matched, and the 400 named primary.
  allOf: [
    { if: { required: ['classification'], properties: { classification: { const: 'primary' } } }, then: { required: ['primary'] } },
    { if: { required: ['classification'], properties: { classification: { const: 'hybrid' } } }, then: { required: ['hybrid'] } }
  ]
})

export const NarrativeRequestSchema = Type.Object({
  profile: ProfileSchema,
  locale: Type.Optional(Type.String({ pattern: LOCALE_PATTERN, maxLength: 35, default: 'en', description: 'BCP 47 language tag, canonicalized (en-us is en-US); a tag that is not well-formed is refused; limited to LOCALES when the server sets it (en-GB is served as en when only en is); part of the cache key' })),
  userId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: USER_ID_PATTERN, description: USER_ID_DESCRIPTION }))
}, {
  additionalProperties: false,
  $id: 'NarrativeRequest',
  examples: [{ profile: { classification: 'primary', primary: 'Arcturus', percentages: { Arcturus: 42.3, Sirius: 18.7, Pleiades: 15.2 } }, locale: 'en', userId: 'u-123' }]
})
export type NarrativeRequest = Static<typeof NarrativeRequestSchema>

export type CacheStatus = 'hit' | 'stale' | 'durable' | 'miss' | 'fallback'
export const CacheStatusSchema = Type.Unsafe<CacheStatus>({ type: 'string', enum: ['hit', 'stale', 'durable', 'miss', 'fallback'] })

export const NarrativeSchema = Type.Object({
  summary: Type.String(),
  bullets: Type.Array(Type.String())
})

export const NarrativeResponseSchema = Type.Object({
  narrative: NarrativeSchema,
  cache: Type.Object({
    status: CacheStatusSchema,
    key: Type.String(),
    ageSeconds: Type.Integer({ minimum: 0 })
  }),
  engine: Type.String({ description: 'the model that wrote the narrative, or "template"' }),
  version: Type.String({ description: 'the prompt version that wrote the narrative (v1, v2…: prompts/), which during a rollout may be an earlier one than the active version' })
}, { $id: 'NarrativeResponse' })
export type NarrativeResponse = Static<typeof NarrativeResponseSchema>

/** The shared error body: src/schemas/error.ts. */
export { ErrorSchema } from './error.ts'
