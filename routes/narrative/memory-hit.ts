import { Readable } from 'node:stream'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyReply, preParsingHookHandler } from 'fastify'
import { MEMO_MAX_BODY_CHARS } from '../../src/narrative/service.ts'
import type { NarrativeResponse } from '../../src/schemas/narrative.ts'
import type { FrontHandler } from '../../src/front-door.ts'
import { nextRequestId } from '../../src/request-id.ts'
import { requestLine, writesRequestLines } from '../../plugins/metrics.ts'
import { acceptsEventStream, noteAnswer } from './stream.ts'

/** The route whose hits are answered from memory. */
export const NARRATIVE_ROUTE = '/api/narrative'
/** A JSON body, as Fastify's parser would take it: `application/json`, parameters allowed. */
const JSON_TYPE = /^application\/json\s*(;|$)/i
const JSON_UTF8 = 'application/json; charset=utf-8'

/**
 * By its headers alone, whether a request may be answered from memory: a
 * JSON body small enough to be remembered, with a Content-Length, and no
 * stream asked for. Anything else takes the whole path untouched.
 */
function mayBeFromMemory (headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length']
  const type = headers['content-type']
  // A request with an Origin (a browser's, cross-origin) takes the whole path, where CORS answers it.
  return length !== undefined && type !== undefined && headers['transfer-encoding'] === undefined && headers.origin === undefined &&
    Number(length) <= MEMO_MAX_BODY_CHARS && JSON_TYPE.test(type) && !acceptsEventStream(headers.accept)
}

/** Reads a (small) body whole, then calls back once: with its chunks, or with the stream's error. */
function readWhole (stream: NodeJS.ReadableStream, then: (err: Error | undefined, chunks: Buffer[]) => void): void {
  const chunks: Buffer[] = []
  const onData = (chunk: Buffer | string): void => { chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk) }
  const onEnd = (err?: Error): void => {
    stream.removeListener('data', onData)
    stream.removeListener('end', onEnd)
    stream.removeListener('error', onEnd)
    then(err, chunks)
  }
  stream.on('data', onData)
  stream.on('end', onEnd)
  stream.on('error', onEnd)
  stream.resume()
}

function textOf (chunks: Buffer[]): string {
  return chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8')
}

/**
 * Bodies the front door read and then handed on to Fastify (not a memory
 * hit): the route's preParsing hook gives them to the parser as the payload,
 * or the stream's error as a 400.
 */
const handedOn = new WeakMap<IncomingMessage, Buffer[] | Error>()

/** A narrative as last sent: the body, its JSON text from the route's serializer, and the text's length. */
interface SentText { body: NarrativeResponse, text: string, length: string }

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
      last = { body, text, length: String(Buffer.byteLength(text)) }
      this.sent.set(body.narrative, last)
    }
    return last
  }
}

/**
 * The hit path for a body seen before, before Fastify routes the request
 * (installed with src/front-door.ts on a server made by serverOptions): for
 * `POST /api/narrative` with a small JSON body, it reads the body itself,
 * and when the service can answer that exact text from memory
 * (NarrativeService.fromMemory: remembered, so already parsed and validated
 * once, and held fresh in the in-process tier) it answers at once: no
 * routing, no request and reply objects, no JSON parse, no schema check, no
 * handler. The answer is what the route would send (same status, headers and
 * bytes), counted, timed, logged and recorded for analytics like any other
 * hit. Anything else goes on to Fastify, with the body already read handed
 * on through the route's preParsing hook, so limits, errors and messages are
 * Fastify's own. Once closing has begun it steps aside, so every answer says
 * `Connection: close` as the app's onSend hook has it.
 *
 * It answers only requests no other hook of the route would change: the
 * route's hooks are checked by test/front-door.test.ts.
 */
export function memoryHitFront (fastify: FastifyInstance, texts: HitTexts): FrontHandler {
  const latency = fastify.metrics.latency.labels(NARRATIVE_ROUTE, 'hit')
  return (req, res, next) => {
    if (req.url !== NARRATIVE_ROUTE || req.method !== 'POST' || !texts.ready || fastify.isClosing() || !mayBeFromMemory(req.headers)) {
      next(req, res)
      return
    }
    const started = performance.now()
    readWhole(req, (err, chunks) => {
      const served = err !== undefined || fastify.isClosing() ? undefined : fastify.narratives.fromMemory(textOf(chunks))
      if (served === undefined) {
        handedOn.set(req, err ?? chunks)
        next(req, res)
        return
      }
      const sent = texts.textOf(served.body)
      fastify.countAnswer('hit')
      res.writeHead(200, { 'x-cache': 'HIT', 'content-type': JSON_UTF8, 'content-length': sent.length })
      res.end(sent.text)
      const elapsedMs = performance.now() - started
      latency.observe(elapsedMs / 1000)
      if (writesRequestLines(fastify.log.level)) {
        fastify.log.info({ reqId: nextRequestId(), ...requestLine('POST', NARRATIVE_ROUTE, 200, 'hit', served.body.cache.key, elapsedMs) }, 'request')
      }
    })
  }
}

/**
 * The same hit path as a preParsing hook of the route, for requests the
 * front door did not see (fastify.inject(), a server made without it) or
 * stepped aside from; and where the front door read a body and handed it
 * on, the hook hands that body to the parser.
 */
export function memoryHitHook (fastify: FastifyInstance, texts: HitTexts): preParsingHookHandler {
  return function memoryHit (request, reply, payload, done): void {
    const read = handedOn.get(request.raw)
    if (read !== undefined) {
      handedOn.delete(request.raw)
      if (read instanceof Error) done(Object.assign(read, { statusCode: 400 }))
      else done(null, Readable.from(read))
      return
    }
    if (!mayBeFromMemory(request.headers)) {
      done(null, payload)
      return
    }
    texts.learn(reply)
    readWhole(payload, (err, chunks) => {
      if (err !== undefined) {
        done(Object.assign(err, { statusCode: 400 }))
        return
      }
      const served = fastify.narratives.fromMemory(textOf(chunks))
      if (served === undefined) {
        // The whole path, from the bytes already read.
        done(null, Readable.from(chunks))
        return
      }
      noteAnswer(fastify, request, served.body.cache)
      reply.header('X-Cache', 'HIT')
      // Answered: the hook chain stops here (done is not called), and the
      // reply goes through the route's onSend hooks as usual. A string with
      // a JSON content type is sent as it is: already serialized.
      if (texts.ready) reply.type(JSON_UTF8).send(texts.textOf(served.body).text)
      else reply.send(served.body)
    })
  }
}
