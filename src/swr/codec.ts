import { gunzipSync, gzipSync } from 'node:zlib'
import { VERSION_DIGITS, withVersion } from './store.ts'
import type { Entry } from './types.ts'

/** How an adapter's entries become bytes in the store and back. */
export interface EntryCodec<V> {
  /** Throws ValueTooLargeError when it should not be cached: the value is then served uncached. */
  encode: (entry: Entry<V>, version: number) => Buffer
  /** Throws CacheCorruptionError for anything it cannot read: the entry is deleted and counts as missing. */
  decode: (stored: Buffer) => Entry<V>
}

export class CacheCorruptionError extends Error {
  override readonly name: string = 'CacheCorruptionError'
  readonly code = 'SWR_CACHE_CORRUPT'
}

export class ValueTooLargeError extends Error {
  override readonly name: string = 'ValueTooLargeError'
  readonly code = 'SWR_VALUE_TOO_LARGE'
}

const FORMAT_JSON = 0x6a // 'j'
const FORMAT_GZIP = 0x7a // 'z'

/**
 * The stored form of a JSON document: version digits (newer wins), a format
 * byte, then the JSON or its gzip. `json` must already be within the
 * adapter's size limit.
 */
export function sealJson (json: Buffer, version: number, compress: boolean): Buffer {
  const payload = compress ? gzipSync(json) : json
  return withVersion(version, Buffer.concat([Buffer.of(compress ? FORMAT_GZIP : FORMAT_JSON), payload]))
}

/**
 * The JSON document of a stored value, every layer checked: version header,
 * format byte, gzip (its output capped at `maxBytes`, so a gzip bomb costs at
 * most that), JSON. Anything off is a CacheCorruptionError, never a crash.
 */
export function openJson (stored: Buffer, maxBytes: number): unknown {
  if (stored.length <= VERSION_DIGITS + 1 || !/^[0-9]{13}$/.test(stored.subarray(0, VERSION_DIGITS).toString('latin1'))) {
    throw new CacheCorruptionError('stored value has no version header')
  }
  const format = stored[VERSION_DIGITS]
  let json: Buffer = stored.subarray(VERSION_DIGITS + 1)
  if (format === FORMAT_GZIP) {
    try {
      json = gunzipSync(json, { maxOutputLength: maxBytes })
    } catch (err) {
      throw new CacheCorruptionError(`stored value does not gunzip within ${maxBytes} bytes: ${(err as Error).message}`)
    }
  } else if (format !== FORMAT_JSON) {
    throw new CacheCorruptionError('stored value has an unknown format byte')
  }
  try {
    return JSON.parse(json.toString('utf8'))
  } catch {
    throw new CacheCorruptionError('stored value is not JSON')
  }
}
