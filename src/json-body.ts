import type { FastifyInstance } from 'fastify'
import sjson from 'secure-json-parse'
import { UnsupportedMediaTypeError } from './errors.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The JSON text the body was parsed from (src/json-body.ts): the same text always parses the same. */
    jsonBodyText?: string
  }
}

class JsonBodyError extends Error {
  override readonly name: string = 'JsonBodyError'
  readonly statusCode = 400
  readonly code: string

  constructor (message: string, code: string) {
    super(message)
    this.code = code
  }
}

/**
 * JSON bodies parsed with secure-json-parse, like Fastify's own parser, but
 * with messages that say what was wrong: a `__proto__` key, a
 * `constructor.prototype` key, or the syntax error and where it is.
 * JSON is the only body this server takes: any other content type (text/plain
 * included, which Fastify would parse as a string) is a 415 naming application/json.
 */
export function registerJsonBodyParser (fastify: FastifyInstance): void {
  fastify.decorateRequest('jsonBodyText', undefined)
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', (request, _payload, done) => {
    done(new UnsupportedMediaTypeError(request.headers['content-type'] ?? 'no Content-Type'), undefined)
  })
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string
    request.jsonBodyText = text
    if (text.trim() === '') {
      done(new JsonBodyError('Body is empty but content-type is application/json', 'NARR_EMPTY_BODY'), undefined)
      return
    }
    try {
      done(null, sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }))
    } catch (err) {
      const message = (err as Error).message
      // secure-json-parse says "forbidden prototype property" for both kinds; tell them apart.
      if (/forbidden prototype property/.test(message)) {
        const which = /"__proto__"\s*:/.test(text) ? '"__proto__"' : '"constructor.prototype"'
        done(new JsonBodyError(`Body contains a forbidden ${which} key`, 'NARR_FORBIDDEN_KEY'), undefined)
      } else done(new JsonBodyError(`Body is not valid JSON: ${message}`, 'NARR_INVALID_JSON'), undefined)
    }
  })
}
