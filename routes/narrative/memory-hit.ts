import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify'
import { MEMO_MAX_BODY_CHARS } from '../../src/narrative-service.js'
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
      // reply goes through the route's serializer and onSend hooks as usual.
      reply.send(served.body)
    }
    payload.on('data', onData)
    payload.on('end', onEnd)
    payload.on('error', onEnd)
    payload.resume()
  }
}
