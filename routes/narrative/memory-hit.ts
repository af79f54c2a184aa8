import { answerFromMemory } from '../read-body.ts'
import type { FastifyInstance, FastifyReply, preParsingHookHandler } from 'fastify'
import { MEMO_MAX_BODY_CHARS } from '../../src/narrative/service.ts'
import type { NarrativeResponse } from '../../src/schemas/narrative.ts'
import { acceptsEventStream, noteAnswer } from './stream.ts'

/** The route whose hits are answered from memory. */
export const NARRATIVE_ROUTE = '/api/narrative'
const JSON_UTF8 = 'application/json; charset=utf-8'

/** A narrative as last sent: the body, and its JSON text from the route's serializer. */
interface SentText { body: NarrativeResponse, text: string }

/**
 * A memory hit's body as JSON text made by the route's own serializer (so
 * byte for byte what the handler's answer would be), made once for each
 * narrative and age: a hot key's hits within the same second share one text
 * instead of serializing the same object again. Keyed by the narrative
 * object the in-process tier holds, so a replaced entry is never sent from
 * its old text, and forgotten with it.
 */
export class HitTexts {
  private readonly sent = new WeakMap<object, SentText>()
  private serialize: ((body: NarrativeResponse) => string) | undefined

  /** True once the route's serializer is known (from a reply of the route: learn()). */
  get ready (): boolean { return this.serialize !== undefined }

  learn (reply: FastifyReply): void {
    this.serialize ??= reply.getSerializationFunction('200', 'application/json') as ((body: NarrativeResponse) => string) | undefined
  }

  /** The text for this body. Only once ready: before, there is no serializer to make it with. */
  textOf (body: NarrativeResponse): SentText {
    if (this.serialize === undefined) throw new Error('HitTexts.textOf() before the route\'s serializer is known')
    let last = this.sent.get(body.narrative)
    if (last === undefined || last.body.cache.ageSeconds !== body.cache.ageSeconds || last.body.cache.key !== body.cache.key ||
      last.body.cache.status !== body.cache.status || last.body.engine !== body.engine || last.body.version !== body.version) {
      const text = this.serialize(body)
      last = { body, text }
      this.sent.set(body.narrative, last)
    }
    return last
  }
}

/**
 * The hit path, as the route's preParsing hook: for `POST /api/narrative`
 * with a JSON body within the limit, it reads the body whole (its text is
 * `request.jsonBodyText`, which the service's memo keys on and the error
 * handler reads to say what is wrong with bad JSON). When the service can
 * answer that exact text from memory (NarrativeService.fromMemory:
 * remembered, so already parsed and validated once, and held fresh in the
 * in-process tier) it answers at once with the body pre-serialized by the
 * route's own serializer: no JSON parse, no schema check, no handler. The
 * reply still goes through the route's onSend and onResponse hooks (request
 * id, Connection: close while closing, the log line, the metrics), and every
 * onRequest hook (CORS, load shedding, a hook added later) has run before.
 * Otherwise the bytes read go on to Fastify's parser.
 *
 * Error boundary: anything that throws here (the memory lookup, the
 * serializer) is handed to Fastify as the hook's error, so it is a 500 with
 * the error handler's body, never an uncaught exception.
 */
export function memoryHitHook (fastify: FastifyInstance, texts: HitTexts, bodyLimit: number): preParsingHookHandler {
  return answerFromMemory(bodyLimit, (request, reply, text) => {
    // A request with Cache-Control takes the whole path: its directives may refuse this entry, or need a check of who asks.
    if (text.length > MEMO_MAX_BODY_CHARS || acceptsEventStream(request.headers.accept) || request.headers['cache-control'] !== undefined) return undefined
    const served = fastify.narratives.fromMemory(text)
    if (served === undefined) return undefined
    noteAnswer(fastify, request, served.body.cache)
    texts.learn(reply)
    // A string with a JSON content type is sent as it is: already serialized.
    const hit = texts.ready ? texts.textOf(served.body) : undefined
    return () => {
      reply.header('X-Cache', 'HIT').header('Age', String(served.body.cache.ageSeconds))
      if (hit !== undefined) reply.type(JSON_UTF8).send(hit.text)
      else reply.send(served.body)
    }
  })
}
