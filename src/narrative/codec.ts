import { gunzipSync, gzipSync } from 'node:zlib'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { VERSION_DIGITS, withVersion } from '../swr/store.ts'

/** The value cached per key: the original design's CachedNarrative. */
export const CachedNarrativeSchema = Type.Object({
  version: Type.String(),
  engine: Type.String(),
  prompt_hash: Type.String(),
  profile: Type.Object({
    classification: Type.String(),
    primary: Type.Optional(Type.String()),
    hybrid: Type.Optional(Type.Array(Type.String())),
    percentages: Type.Record(Type.String(), Type.Number())
  }),
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

/** Values larger than this are gzipped. */
export const COMPRESS_ABOVE_BYTES = 64 * 1024
/** Narratives larger than this are served but never cached; also the gunzip output cap. */
export const MAX_VALUE_BYTES = 128 * 1024

const FORMAT_JSON = 0x6a // 'j'
const FORMAT_GZIP = 0x7a // 'z'

export class CacheCorruptionError extends Error {
  override readonly name: string = 'CacheCorruptionError'
  readonly code = 'NARR_CACHE_CORRUPT'
}

export class ValueTooLargeError extends Error {
  override readonly name: string = 'ValueTooLargeError'
  readonly code = 'NARR_VALUE_TOO_LARGE'
}

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
  const compress = sized.meta.compression === 'gzip'
  const payload = compress ? gzipSync(json) : json
  return withVersion(version, Buffer.concat([Buffer.of(compress ? FORMAT_GZIP : FORMAT_JSON), payload]))
}

/**
 * Decodes a stored value, checking every layer: format byte, gzip (with an
 * output cap, so a gzip bomb costs at most MAX_VALUE_BYTES), JSON, shape and
 * engine version. Anything off is a CacheCorruptionError, never a crash.
 */
export function decodeEntry (stored: Buffer, expectedVersion: string): CachedNarrative {
  if (stored.length <= VERSION_DIGITS + 1 || !/^[0-9]{13}$/.test(stored.subarray(0, VERSION_DIGITS).toString('latin1'))) {
    throw new CacheCorruptionError('stored value has no version header')
  }
  const format = stored[VERSION_DIGITS]
  let json: Buffer = stored.subarray(VERSION_DIGITS + 1)
  if (format === FORMAT_GZIP) {
    try {
      json = gunzipSync(json, { maxOutputLength: MAX_VALUE_BYTES })
    } catch (err) {
      throw new CacheCorruptionError(`stored value does not gunzip within ${MAX_VALUE_BYTES} bytes: ${(err as Error).message}`)
    }
  } else if (format !== FORMAT_JSON) {
    throw new CacheCorruptionError('stored value has an unknown format byte')
  }
  let value: unknown
  try {
    value = JSON.parse(json.toString('utf8'))
  } catch {
    throw new CacheCorruptionError('stored value is not JSON')
  }
  if (!checkShape.Check(value)) throw new CacheCorruptionError('stored value does not have the CachedNarrative shape')
  if (value.version !== expectedVersion) throw new CacheCorruptionError(`stored value is of version ${value.version}, expected ${expectedVersion}`)
  return value
}
