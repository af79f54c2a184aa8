import type { FastifyError, FastifyRequest } from 'fastify'
import sjson from 'secure-json-parse'
import { BodyTooLargeError, EmptyJsonBodyError, ForbiddenJsonKeyError, InvalidJsonError, UnsupportedMediaTypeError } from './errors.ts'

/**
 * Fastify's own body errors, restated so that they say what the server takes
 * (the limit is the route's); any other error as it is. The app's error
 * handler and the /v1 routes' (routes/chat/index.ts) both use it.
 */
export function ownError (error: FastifyError, request: FastifyRequest): FastifyError {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': {
      const limit = request.routeOptions.bodyLimit
      return new BodyTooLargeError(limit / 1024, limit)
    }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return new UnsupportedMediaTypeError(request.headers['content-type'] ?? 'no Content-Type')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return new EmptyJsonBodyError()
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return jsonError(request.jsonBodyText)
    default: return error
  }
}

/**
 * What was wrong with a body Fastify's parser refused (its own error says
 * only "not a valid JSON"), from the text when the route kept it: the syntax
 * error and where it is, or the forbidden key. Only ever run on a refusal.
 */
export function jsonError (text: string | undefined): FastifyError {
  if (text === undefined) return new InvalidJsonError('the body could not be parsed')
  if (text.trim() === '') return new EmptyJsonBodyError()
  try {
    JSON.parse(text)
  } catch (err) {
    return new InvalidJsonError((err as Error).message)
  }
  // Valid JSON that secure-json-parse refused: a prototype key. Which one?
  try {
    sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'ignore' })
    return new ForbiddenJsonKeyError('"constructor.prototype"')
  } catch {
    return new ForbiddenJsonKeyError('"__proto__"')
  }
}
