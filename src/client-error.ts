import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { nextRequestId } from './request-id.ts'

/** What Node's HTTP parser (llhttp) or server says when it refuses a request. */
interface ClientError extends Error {
  code?: string
  /** llhttp's own words, e.g. "Invalid character in Content-Length". */
  reason?: string
  /** The bytes read so far (a Buffer; Fastify's types say otherwise): the request line, when it came. */
  rawPacket?: unknown
}

/** The status and what was wrong, in the words a caller can act on. */
function describe (err: ClientError, limits: { headersMs: number, requestMs: number }): [status: number, code: string, message: string] {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'NARR_REQUEST_TIMEOUT', `The request did not arrive whole in time: its headers within ${limits.headersMs / 1000} s, all of it within ${limits.requestMs / 1000} s (was its Content-Length more than the bytes sent?)`]
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'NARR_HEADERS_TOO_LARGE', 'The request\'s headers are too large']
    case 'HPE_INVALID_METHOD':
      return [400, 'NARR_BAD_HTTP', 'The request\'s method is not one HTTP/1.1 knows']
    default:
      return [400, 'NARR_BAD_HTTP', `The request is not valid HTTP/1.1: ${err.reason ?? err.message}${err.code === undefined ? '' : ` (${err.code})`}`]
  }
}

/**
 * Fastify's clientErrorHandler: a request Node refused before Fastify saw it
 * (a bad Content-Length, Transfer-Encoding with Content-Length, bad chunk
 * framing, a bad header, an unknown method, a body that never came whole) is
 * answered as the app answers any error, saying what was wrong, with a request
 * id, and in OpenAI's shape on /v1 paths; then the connection is closed (its
 * framing can no longer be trusted). Fastify's own says only "Client Error".
 */
export function clientErrorHandler (limits: { headersMs: number, requestMs: number }) {
  return function answerClientError (err: ClientError, socket: Socket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const [status, code, message] = describe(err, limits)
    const label = STATUS_CODES[status] ?? 'Error'
    const start = Buffer.isBuffer(err.rawPacket) ? err.rawPacket.subarray(0, 2048).toString('latin1') : ''
    const path = /^[A-Z]+ (\S+)/.exec(start)?.[1] ?? ''
    const body = JSON.stringify(path.startsWith('/v1/')
      ? { error: { message, type: 'invalid_request_error', code: code.slice('NARR_'.length).toLowerCase(), param: null } }
      : { statusCode: status, code, error: label, message })
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${label}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${nextRequestId()}\r\nConnection: close\r\n\r\n${body}`)
    }
    socket.destroy()
  }
}
