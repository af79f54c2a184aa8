/**
 * Request ids for the log lines: `req-<n>` in base 36, as Fastify's default
 * makes them, from one counter per process shared by Fastify (serverOptions'
 * genReqId) and the hits answered before Fastify sees them
 * (routes/narrative/memory-hit.ts), so no two lines of a process share an id.
 * Wraps at 2^31 - 1 to stay a small integer, as Fastify's does.
 */
let last = 0

export function nextRequestId (): string {
  last = (last + 1) & 0x7fffffff
  return `req-${last.toString(36)}`
}
