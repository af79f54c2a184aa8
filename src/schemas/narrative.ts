import { Type, type Static } from '@sinclair/typebox'

/** Letters, digits, space, ' and -, starting with a letter; 1 to 40 characters. */
export const SYSTEM_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9 '\\-]{0,39}$"
/** Names that would reach Object.prototype if ever used as keys: refused outright. */
export const RESERVED_NAMES = ['constructor', 'prototype', '__proto__', 'hasOwnProperty', 'toString', 'valueOf']

const SystemName = Type.String({ pattern: SYSTEM_NAME_PATTERN, minLength: 1, maxLength: 40, description: 'A star system name' })

export const ProfileSchema = Type.Object({
  // An enum rather than a union of literals, so a bad value yields one error that lists the allowed ones.
  classification: Type.Unsafe<'primary' | 'hybrid' | 'unresolved'>({ type: 'string', enum: ['primary', 'hybrid', 'unresolved'], description: 'primary needs `primary`; hybrid needs `hybrid`' }),
  primary: Type.Optional(SystemName),
  hybrid: Type.Optional(Type.Array(SystemName, { minItems: 2, maxItems: 4, uniqueItems: true })),
  percentages: Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 100 }), {
    minProperties: 1,
    maxProperties: 32,
    propertyNames: { pattern: SYSTEM_NAME_PATTERN, not: { enum: RESERVED_NAMES } },
    description: '1 to 32 entries of system name to a percentage from 0 to 100'
  })
}, {
  additionalProperties: false,
  // primary/hybrid required by classification: checked in the schema so the 400 names the field.
  allOf: [
    { if: { properties: { classification: { const: 'primary' } } }, then: { required: ['primary'] } },
    { if: { properties: { classification: { const: 'hybrid' } } }, then: { required: ['hybrid'] } }
  ]
})

export const NarrativeRequestSchema = Type.Object({
  profile: ProfileSchema,
  locale: Type.Optional(Type.String({ pattern: '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$', maxLength: 35, default: 'en', description: 'BCP 47 language tag; part of the cache key' })),
  userId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Never part of the key nor stored in the cached value' }))
}, {
  additionalProperties: false,
  $id: 'NarrativeRequest',
  examples: [{ profile: { classification: 'primary', primary: 'Arcturus', hybrid: ['Arcturus', 'Sirius'], percentages: { Arcturus: 42.3, Sirius: 18.7, Pleiades: 15.2 } }, locale: 'en', userId: 'u-123' }]
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
  version: Type.String({ description: 'the engine version in the key' })
}, { $id: 'NarrativeResponse' })
export type NarrativeResponse = Static<typeof NarrativeResponseSchema>

/** The shared error body: src/schemas/error.ts. */
export { ErrorSchema } from './error.js'
