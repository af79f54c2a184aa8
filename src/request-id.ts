import type { IncomingMessage } from 'node:http'

/**
 * Request ids, sent back in `X-Request-Id` and written in every log line of
 * the request. An incoming `X-Request-Id` (from a balancer or a client) is
 * kept when it is a short token; anything else (absent, too long, spaces,
 * quotes, control characters) gets a fresh `req-<n>` in base 36, as
 * Fastify's default makes them, from one counter per process. Wraps at
 * 2^31 - 1 to stay a small integer, as Fastify's does.
 */
export const REQUEST_ID_HEADER = 'x-request-id'
/** What an incoming request id may be: 1 to 64 letters, digits, `.`, `_`, `:` or `-`. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/

let last = 0

export function nextRequestId (): string {
  last = (last + 1) & 0x7fffffff
  return `req-${last.toString(36)}`
}

/** Fastify's genReqId: the incoming id when it is a short token, else a fresh one. */
export function requestIdOf (req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER]
  return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : nextRequestId()
}
