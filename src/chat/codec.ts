import { CacheCorruptionError, openJson, sealJson, ValueTooLargeError, type EntryCodec } from '../swr/codec.ts'
import type { Entry } from '../swr/types.ts'

/** What is cached for a chat completion: its stream, chunk by chunk (see chunks.ts). */
export interface ChatValue {
  chunks: string[]
}

/** Completions larger than this are answered but not cached; also the gunzip cap. */
export const MAX_CHAT_BYTES = 1024 * 1024
const COMPRESS_ABOVE_BYTES = 16 * 1024

/** Entries as JSON (`{v: chunks, c, r, s}`), gzipped above 16 KiB. */
export const chatCodec: EntryCodec<ChatValue> = {
  encode (entry, version) {
    const json = Buffer.from(JSON.stringify({ v: entry.value.chunks, c: entry.createdAt, r: entry.refreshedAt, s: entry.staleAfter }))
    if (json.length > MAX_CHAT_BYTES) throw new ValueTooLargeError(`completion is ${json.length} bytes, over the ${MAX_CHAT_BYTES} byte limit`)
    return sealJson(json, version, json.length > COMPRESS_ABOVE_BYTES)
  },
  decode (stored): Entry<ChatValue> {
    const json = openJson(stored, MAX_CHAT_BYTES) as { v?: unknown, c?: unknown, r?: unknown, s?: unknown }
    if (!Array.isArray(json.v) || !json.v.every(c => typeof c === 'string') || typeof json.c !== 'number' || typeof json.r !== 'number' || typeof json.s !== 'number') {
      throw new CacheCorruptionError('stored value is not a chat completion entry')
    }
    return { value: { chunks: json.v }, createdAt: json.c, refreshedAt: json.r, staleAfter: json.s }
  }
}
