import type { IncomingMessage, Server, ServerResponse } from 'node:http'

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Sees a request before Fastify routes it: answers it itself, or hands it on
 * with `next` (at once, or later with its body read: see routes/narrative/memory-hit.ts).
 */
export type FrontHandler = (req: IncomingMessage, res: ServerResponse, next: RequestListener) => void

/** The servers made with a front door (serverOptions' server factory), and the front each has. */
const fronted = new WeakMap<Server, { front?: FrontHandler }>()

/**
 * The server's request listener: the front installed on `server`, if any,
 * then Fastify's own handler. Until a front is installed, every request goes
 * straight to Fastify.
 */
export function frontedListener (server: Server, fastifyHandler: RequestListener): RequestListener {
  const slot: { front?: FrontHandler } = {}
  fronted.set(server, slot)
  return (req, res) => {
    const front = slot.front
    if (front === undefined) fastifyHandler(req, res)
    else front(req, res, fastifyHandler)
  }
}

/**
 * Puts `front` before Fastify on a server made with a front door. False (and
 * nothing changes) for any other server: Fastify then sees every request.
 */
export function installFront (server: Server, front: FrontHandler): boolean {
  const slot = fronted.get(server)
  if (slot === undefined) return false
  slot.front = front
  return true
}
