import type { IncomingHttpHeaders } from 'node:http'

/**
 * The coding a request's body says it was sent in, when it is one this server
 * does not undo: `Content-Encoding` other than identity (gzip, br, ...), or a
 * `Transfer-Encoding` other than chunked (which Node undoes). Such a body read
 * as it is would be garbage, or (a plain body mislabelled) silently taken
 * against what its header says: either way it is refused, naming the header.
 * Undefined for a body sent as it is.
 */
export function codedBody (headers: IncomingHttpHeaders): [header: string, coding: string] | undefined {
  const content = headers['content-encoding']
  if (content !== undefined && !/^\s*identity\s*$/i.test(content)) return ['Content-Encoding', content]
  const transfer = headers['transfer-encoding']
  if (transfer !== undefined && !/^\s*chunked\s*$/i.test(transfer)) return ['Transfer-Encoding', transfer]
  return undefined
}
