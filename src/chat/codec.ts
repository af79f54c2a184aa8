import { CacheCorruptionError, openJson, sealJson, ValueTooLargeError, type EntryCodec } from '../swr/codec.ts'
import type { Entry } from '../swr/types.ts'

/** What is cached for a chat completion: its stream, chunk by chunk (see chunks.ts). */
export interface ChatValue {
  chunks: string[]
  /** When each chunk came, in ms after the first: for replays at the pace they were written. */
  offsets?: number[]
  /** What the upstream call cost (MODEL_PRICES): what each answer from this entry saves. */
  usd?: number
}

/** Completions larger than this are answered but not cached; also the gunzip cap. */
export const MAX_CHAT_BYTES = 1024 * 1024
const COMPRESS_ABOVE_BYTES = 16 * 1024

/** Entries as JSON (`{v: chunks, c, r, s}`), gzipped above 16 KiB. */
export const chatCodec: EntryCodec<ChatValue> = {
  encode (entry, version) {
    const json = Buffer.from(JSON.stringify({ v: entry.value.chunks, o: entry.value.offsets, u: entry.value.usd, c: entry.createdAt, r: entry.refreshedAt, s: entry.staleAfter }))
    if (json.length > MAX_CHAT_BYTES) throw new ValueTooLargeError(`completion is ${json.length} bytes, over the ${MAX_CHAT_BYTES} byte limit`)
    return sealJson(json, version, json.length > COMPRESS_ABOVE_BYTES)
  },
  decode (stored): Entry<ChatValue> {
    const json = openJson(stored, MAX_CHAT_BYTES) as { v?: unknown, o?: unknown, u?: unknown, c?: unknown, r?: unknown, s?: unknown }
    if (!Array.isArray(json.v) || !json.v.every(c => typeof c === 'string') || typeof json.c !== 'number' || typeof json.r !== 'number' || typeof json.s !== 'number') {
      throw new CacheCorruptionError('stored value is not a chat completion entry')
    }
    const offsets = Array.isArray(json.o) && json.o.length === json.v.length && json.o.every(o => typeof o === 'number') ? json.o as number[] : undefined
    return { value: { chunks: json.v, offsets, usd: typeof json.u === 'number' ? json.u : undefined }, createdAt: json.c, refreshedAt: json.r, staleAfter: json.s }
  }
}
