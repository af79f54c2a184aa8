import type { FastifyInstance, FastifyRequest, preParsingHookHandler } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { ApiKey } from '../../src/db/api-keys-repository.ts'
import type { ChatValue } from '../../src/chat/codec.ts'
import { assembleCompletion } from '../../src/chat/chunks.ts'
import { answerFromMemory } from '../read-body.ts'

/** Bodies remembered, and the longest: 2,000 of at most 16 KiB. Longer conversations take the whole path. */
const MEMO_ENTRIES = 2000
const MEMO_MAX_BODY_BYTES = 16 * 1024

/** Each key's scope, made once per key object (a key is looked up again every 30 s, as a new object). */
const scopes = new WeakMap<ApiKey, string>()

/**
 * Whose entries a key reads and writes: its tenant's, or the shared scope
 * when an admin marked the tenant as sharing. The same string for the same
 * key object every time: the hit path looks it up in a map on every hit, and
 * a string made anew would be hashed anew.
 */
export function scopeOf (key: ApiKey): string {
  let scope = scopes.get(key)
  if (scope === undefined) {
    scope = key.sharing ? 'shared' : `t-${key.tenant}`
    scopes.set(key, scope)
  }
  return scope
}

/**
 * The JSON answer of each stored completion, assembled and serialized once:
 * a hit from the in-process tier holds the same value object every time, so
 * it answers with this string rather than parsing every chunk again.
 */
const assembled = new WeakMap<ChatValue, string>()
export function completionJson (value: ChatValue): string {
  let json = assembled.get(value)
  if (json === undefined) {
    json = JSON.stringify(assembleCompletion(value.chunks))
    assembled.set(value, json)
  }
  return json
}

/** Scopes remembered for one body text: identical bodies from more tenants than this start again. */
const MEMO_SCOPES_PER_BODY = 16

/**
 * The cache key of each JSON (not streamed) request body seen whole by the
 * route, by exact text and scope: a body remembered here was parsed and
 * validated once, so the same text in the same scope is the same key. By
 * text, then scope (not one string of both): a hit then builds no string.
 */
export class ChatBodyMemo {
  private readonly keys = new LRUCache<string, Map<string, string>>({ max: MEMO_ENTRIES })

  remember (scope: string, text: string | undefined, key: string): void {
    if (text === undefined || text.length > MEMO_MAX_BODY_BYTES) return
    let byScope = this.keys.get(text)
    if (byScope === undefined) {
      byScope = new Map()
      this.keys.set(text, byScope)
    } else if (byScope.size >= MEMO_SCOPES_PER_BODY && !byScope.has(scope)) {
      byScope.clear()
    }
    byScope.set(scope, key)
  }

  keyOf (scope: string, text: string): string | undefined {
    return this.keys.get(text)?.get(scope)
  }
}

/**
 * The hit path of POST /v1/chat/completions, as the route's preParsing hook
 * (as routes/narrative/memory-hit.ts does for narratives): a JSON body within
 * 16 KiB is read whole (its text is `request.jsonBodyText`); when its API key
 * is one this process checked in the last 30 s, its text was seen before in
 * that key's scope, and the in-process tier holds a fresh entry, the answer
 * goes out at once, pre-serialized: no JSON parse, no schema check, no
 * handler. Everything else (no key yet, Cache-Control, X-Replay-Pace, a
 * stream, a body never seen) takes the whole path from the bytes read. The
 * reply still goes through the onSend and onResponse hooks, and every
 * onRequest hook has run before.
 */
export function chatMemoryHitHook (fastify: FastifyInstance, memo: ChatBodyMemo): preParsingHookHandler {
  // Only a request with a key and none of the headers that change what is answered.
  const wanted = (request: FastifyRequest): boolean => request.headers.authorization !== undefined &&
    request.headers['cache-control'] === undefined && request.headers['x-replay-pace'] === undefined
  return answerFromMemory(MEMO_MAX_BODY_BYTES, (request, reply, text) => {
    const secret = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '')?.[1]
    const apiKey = secret === undefined ? undefined : fastify.chat.knownKey(secret)
    if (apiKey === undefined || apiKey === null) return undefined
    const key = memo.keyOf(scopeOf(apiKey), text)
    const hit = key === undefined ? undefined : fastify.chat.engine.localHit(key)
    if (key === undefined || hit === undefined) return undefined
    const json = completionJson(hit.value)
    return () => {
      // Answered without calling the upstream: it saved what the entry's call cost.
      if (hit.value.usd !== undefined) fastify.chat.noteSaving(apiKey.id, hit.value.usd)
      reply.header('X-Cache', 'HIT').header('X-Cache-Key', key).header('Age', String(Math.max(0, Math.floor((Date.now() - hit.writtenAt) / 1000))))
      reply.type('application/json; charset=utf-8').send(json)
    }
  }, wanted)
}
