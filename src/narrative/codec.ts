import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { CacheCorruptionError, openJson, sealJson, ValueTooLargeError, type EntryCodec } from '../swr/codec.ts'
import type { Entry } from '../swr/types.ts'

/** A narrative entry as stored (in the store and the durable tier's rows): the original design's CachedNarrative. */
export const CachedNarrativeSchema = Type.Object({
  version: Type.String(),
  engine: Type.String(),
  prompt_hash: Type.String(),
  /** The prompt version that wrote it (entries written before versions were kept have none: v1 wrote them). */
  prompt_version: Type.Optional(Type.String()),
  profile: Type.Object({
    classification: Type.String(),
    primary: Type.Optional(Type.String()),
    hybrid: Type.Optional(Type.Array(Type.String())),
    percentages: Type.Record(Type.String(), Type.Number())
  }),
  /** The request's locale (entries written before it was kept have none). */
  locale: Type.Optional(Type.String()),
  narrative: Type.Object({ summary: Type.String({ minLength: 1 }), bullets: Type.Array(Type.String()) }),
  meta: Type.Object({
    created_at: Type.Number(),
    refreshed_at: Type.Number(),
    stale_after: Type.Number(),
    ttl_seconds: Type.Number(),
    size_bytes: Type.Number(),
    compression: Type.Union([Type.Literal('none'), Type.Literal('gzip')])
  })
})
export type CachedNarrative = Static<typeof CachedNarrativeSchema>
const checkShape = TypeCompiler.Compile(CachedNarrativeSchema)

/** What the engine caches for a narrative: the stored form without its times. */
export type NarrativeValue = Omit<CachedNarrative, 'meta'>

/** Values larger than this are gzipped. */
export const COMPRESS_ABOVE_BYTES = 64 * 1024
/** Narratives larger than this are served but never cached; also the gunzip output cap. */
export const MAX_VALUE_BYTES = 128 * 1024

export { CacheCorruptionError, ValueTooLargeError }

/**
 * Encodes an entry as version digits + format byte + JSON (or gzip of it).
 * Throws ValueTooLargeError past MAX_VALUE_BYTES: the caller serves it uncached.
 */
export function encodeEntry (entry: CachedNarrative, version: number): Buffer {
  // size_bytes is part of the JSON it measures: settle it before checking the limit,
  // so nothing is stored that decodeEntry's gunzip cap would then refuse.
  let sized: CachedNarrative = entry
  let json = Buffer.from(JSON.stringify(sized))
  for (let i = 0; i < 3 && sized.meta.size_bytes !== json.length; i++) {
    const compression = json.length > COMPRESS_ABOVE_BYTES ? 'gzip' : 'none'
    sized = { ...entry, meta: { ...entry.meta, size_bytes: json.length, compression } }
    json = Buffer.from(JSON.stringify(sized))
  }
  if (json.length > MAX_VALUE_BYTES) throw new ValueTooLargeError(`narrative is ${json.length} bytes, over the ${MAX_VALUE_BYTES} byte limit`)
  return sealJson(json, version, sized.meta.compression === 'gzip')
}

/**
 * Decodes a stored value, checking every layer: the envelope (format byte,
 * gzip capped at MAX_VALUE_BYTES, JSON: src/swr/codec.ts), then the shape and
 * the engine version. Anything off is a CacheCorruptionError, never a crash.
 */
export function decodeEntry (stored: Buffer, expectedVersion: string): CachedNarrative {
  const value = openJson(stored, MAX_VALUE_BYTES)
  if (!checkShape.Check(value)) throw new CacheCorruptionError('stored value does not have the CachedNarrative shape')
  if (value.version !== expectedVersion) throw new CacheCorruptionError(`stored value is of version ${value.version}, expected ${expectedVersion}`)
  return value
}

/** The stored form of an engine entry. */
export function toCached (entry: Entry<NarrativeValue>, ttlSeconds: number): CachedNarrative {
  return {
    ...entry.value,
    meta: { created_at: entry.createdAt, refreshed_at: entry.refreshedAt, stale_after: entry.staleAfter, ttl_seconds: ttlSeconds, size_bytes: 0, compression: 'none' }
  }
}

/** The engine entry of a stored one. */
export function fromCached (cached: CachedNarrative): Entry<NarrativeValue> {
  const { meta, ...value } = cached
  return { value, createdAt: meta.created_at, refreshedAt: meta.refreshed_at, staleAfter: meta.stale_after }
}

/** The narrative adapter's codec: entries of `engineVersion` only (another version's is corrupt to it, and rebuilt). */
export function narrativeCodec (engineVersion: string, ttlSeconds: number): EntryCodec<NarrativeValue> {
  return {
    encode: (entry, version) => encodeEntry(toCached(entry, ttlSeconds), version),
    decode: stored => fromCached(decodeEntry(stored, engineVersion))
  }
}
