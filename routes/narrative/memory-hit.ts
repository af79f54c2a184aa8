import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify'
import { MEMO_MAX_BODY_CHARS } from '../../src/narrative-service.js'
import type { NarrativeResponse } from '../../src/schemas/narrative.js'
import { noteAnswer, wantsEventStream } from './stream.js'

/** A JSON body, as Fastify's parser would take it: `application/json`, parameters allowed. */
const JSON_TYPE = /^application\/json\s*(;|$)/i

/**
 * The hit path for a body seen before, as a preParsing hook of the narrative
 * route: it reads the (small) body itself, and when the service can answer
 * that exact text from memory (NarrativeService.fromMemory: remembered, so
 * already parsed and validated once, and held fresh in the in-process tier)
 * it answers at once, skipping the JSON parse, the schema check and the
 * handler. Anything else (another body, a miss, a stream request, a body
 * over the memo's size or without a Content-Length) goes on unchanged: the
 * bytes read are handed back to Fastify's parser as the payload stream, so
 * limits, errors and messages are Fastify's own.
 */
export function memoryHitHook (fastify: FastifyInstance): preParsingHookHandler {
  const sendAsText = textSender()
  return function memoryHit (request: FastifyRequest, reply: FastifyReply, payload, done): void {
    const length = request.headers['content-length']
    const type = request.headers['content-type']
    if (length === undefined || type === undefined || request.headers['transfer-encoding'] !== undefined ||
      Number(length) > MEMO_MAX_BODY_CHARS || !JSON_TYPE.test(type) || wantsEventStream(request)) {
      done(null, payload)
      return
    }
    const chunks: Buffer[] = []
    const onData = (chunk: Buffer | string): void => { chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk) }
    const onEnd = (err?: Error): void => {
      payload.removeListener('data', onData)
      payload.removeListener('end', onEnd)
      payload.removeListener('error', onEnd)
      if (err !== undefined) {
        done(Object.assign(err, { statusCode: 400 }))
        return
      }
      const text = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8')
      const served = fastify.narratives.fromMemory(text)
      if (served === undefined) {
        // The whole path, from the bytes already read.
        done(null, Readable.from(chunks))
        return
      }
      noteAnswer(fastify, request, served.body.cache)
      reply.header('X-Cache', 'HIT')
      // Answered: the hook chain stops here (done is not called), and the
      // reply goes through the route's onSend hooks as usual.
      sendAsText(reply, served.body)
    }
    payload.on('data', onData)
    payload.on('end', onEnd)
    payload.on('error', onEnd)
    payload.resume()
  }
}

/** What a narrative was last sent as: the body, and its text from the route's serializer. */
interface SentText { body: NarrativeResponse, text: string }

/**
 * Sends a memory hit's body as JSON text made by the route's own serializer
 * (so byte for byte what the handler's answer would be), made once for each
 * narrative and age: a hot key's hits within the same second share one text
 * instead of serializing the same object again. Keyed by the narrative
 * object the in-process tier holds, so a replaced entry is never sent from
 * its old text, and forgotten with it.
 */
function textSender (): (reply: FastifyReply, body: NarrativeResponse) => void {
  const sent = new WeakMap<object, SentText>()
  let serialize: ((body: NarrativeResponse) => string) | undefined
  return (reply, body) => {
    let last = sent.get(body.narrative)
    if (last === undefined || last.body.cache.ageSeconds !== body.cache.ageSeconds || last.body.cache.key !== body.cache.key ||
      last.body.cache.status !== body.cache.status || last.body.engine !== body.engine || last.body.version !== body.version) {
      serialize ??= reply.getSerializationFunction('200', 'application/json') as ((body: NarrativeResponse) => string) | undefined
      if (serialize === undefined) {
        reply.send(body)
        return
      }
      last = { body, text: serialize(body) }
      sent.set(body.narrative, last)
    }
    // A string with a JSON content type is sent as it is: already serialized.
    reply.type('application/json; charset=utf-8').send(last.text)
  }
}
