import type { IncomingHttpHeaders } from 'node:http'
import { isUtf8 } from 'node:buffer'
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify'

// Reading a small JSON body whole before Fastify parses it: for the routes
// that answer hits from memory in their preParsing hook (narrative, chat).

/** A JSON body, as Fastify's parser would take it: `application/json`, parameters allowed. */
const JSON_TYPE = /^application\/json\s*(;|$)/i

/**
 * By its headers alone, whether the hook reads a request's body whole before
 * Fastify parses it: a JSON body within the body limit, with a
 * Content-Length, sent as it is (no Content-Encoding). Anything else
 * (chunked, coded, too large, another type) goes to Fastify's parser
 * untouched, which takes it or refuses it with its own errors.
 */
export function readsWhole (headers: IncomingHttpHeaders, bodyLimit: number): boolean {
  const length = headers['content-length']
  const type = headers['content-type']
  return length !== undefined && type !== undefined && headers['transfer-encoding'] === undefined && headers['content-encoding'] === undefined &&
    Number(length) <= bodyLimit && (type === 'application/json' || JSON_TYPE.test(type))
}

/**
 * Reads a (small) body whole, then calls back once: with its chunks, or with
 * the stream's error. Done as soon as Content-Length bytes are in (the
 * stream's own `end` comes a tick later, and nobody needs to wait for it).
 */
export function readWhole (stream: NodeJS.ReadableStream, length: number, then: (err: Error | undefined, chunks: Buffer[]) => void): void {
  const chunks: Buffer[] = []
  let received = 0
  let finished = false
  const finish = (err?: Error): void => {
    if (finished) return
    finished = true
    stream.removeListener('data', onData)
    stream.removeListener('end', onEnd)
    // The error listener stays: a stream finished early (its `end` still to
    // come) must never emit an error nobody listens to. finish() runs once.
    then(err, chunks)
  }
  const onData = (chunk: Buffer | string): void => {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    chunks.push(buffer)
    received += buffer.length
    if (received >= length) finish()
  }
  const onEnd = (err?: Error): void => { finish(err) }
  stream.on('data', onData)
  stream.on('end', onEnd)
  stream.on('error', onEnd)
  stream.resume()
}

/** The body's text; undefined when its bytes are not UTF-8 (the parser then refuses them: app.ts). */
function textOf (chunks: Buffer[]): string | undefined {
  const bytes = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
  return isUtf8(bytes) ? bytes.toString('utf8') : undefined
}

/**
 * A route's preParsing hook that answers from memory, before parsing: for a
 * JSON body within `bodyLimit` (and a request `wanted` says is worth it), it
 * reads the body whole, keeps its text in `request.jsonBodyText`, and asks
 * `find` for an answer to that text. `find` returns how to send the answer,
 * or undefined: the bytes already read then go on to Fastify's parser, the
 * schema and the handler. An answered request stops the hook chain here
 * (done is not called) and its reply still passes the route's onSend and
 * onResponse hooks.
 *
 * Error boundary: anything `find` throws is handed to Fastify as the hook's
 * error, so it is a 500 with the error handler's body, never an uncaught
 * exception.
 */
export function answerFromMemory (
  bodyLimit: number,
  find: (request: FastifyRequest, reply: FastifyReply, text: string) => (() => void) | undefined,
  wanted: (request: FastifyRequest) => boolean = () => true
): preParsingHookHandler {
  return function answerFromMemory (request, reply, payload, done): void {
    if (!wanted(request) || !readsWhole(request.headers, bodyLimit)) {
      done(null, payload)
      return
    }
    readWhole(payload, Number(request.headers['content-length']), (err, chunks) => {
      if (err !== undefined) {
        done(Object.assign(err, { statusCode: 400 }))
        return
      }
      let send: (() => void) | undefined
      try {
        const text = textOf(chunks)
        if (text !== undefined) {
          request.jsonBodyText = text
          send = find(request, reply, text)
        }
      } catch (error) {
        done(error as Error)
        return
      }
      if (send === undefined) done(null, Readable.from(chunks))
      else send()
    })
  }
}
