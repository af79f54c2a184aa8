// A small TCP fault proxy (node:net) to sit between the app and Redis or
// PostgreSQL and misbehave on demand, switchable at run time:
//
//   pass       forward both ways untouched (the default)
//   delay      forward every chunk, both ways, `ms` late (order kept)
//   blackhole  accept connections but forward and answer nothing; bytes stay
//              in the kernel buffers, so leaving the mode heals the "network
//              partition" and they flow on in order, as TCP would deliver them
//   reset      every connection, open or new, is reset (TCP RST)
//   cut-reply  forward requests; let `afterBytes` bytes of the next reply
//              through (half of its first chunk by default), then close both sides
//
// `resetConnections()` resets the open connections once, whatever the mode.
// Nothing is ever dropped silently from a live connection: a client never
// sees a reply misaligned with its commands, only delays, stalls and closes,
// which is what a real network or a real server can do.
import { connect, createServer, type Server, type Socket } from 'node:net'

export type FaultMode =
  | { kind: 'pass' }
  | { kind: 'delay', ms: number }
  | { kind: 'blackhole' }
  | { kind: 'reset' }
  | { kind: 'cut-reply', afterBytes?: number }

export interface FaultProxyStats {
  /** connections accepted since start */
  accepted: number
  /** connections open now */
  active: number
  /** connections reset (mode reset or resetConnections) */
  resets: number
  /** connections closed mid-reply (mode cut-reply) */
  cuts: number
  /** bytes forwarded client to server, and server to client */
  bytesUp: number
  bytesDown: number
}

export interface FaultProxy {
  readonly host: string
  readonly port: number
  /** `host:port` of the proxy, to put in a URL or a cluster seed list. */
  readonly address: string
  readonly mode: FaultMode
  readonly stats: FaultProxyStats
  /** The same URL with the proxy's host and port (redis://…, postgres://…). */
  url (target: string): string
  setMode (mode: FaultMode | FaultMode['kind']): void
  /** Resets every open connection now; the mode is unchanged. */
  resetConnections (): number
  /** Stops listening and destroys every connection. Idempotent. */
  close (): Promise<void>
}

export interface FaultProxyOptions {
  /** Where to forward to. */
  target: { host?: string, port: number }
  /** Port to listen on (127.0.0.1); a free one by default. */
  port?: number
  mode?: FaultMode | FaultMode['kind']
}

interface Queued { chunk: Buffer, due: number }

function asMode (mode: FaultMode | FaultMode['kind']): FaultMode {
  if (typeof mode !== 'string') return mode
  if (mode === 'delay') return { kind: 'delay', ms: 100 }
  return { kind: mode } as FaultMode
}

function reset (socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy() // not connected yet: nothing to reset
  }
}

/** One proxied connection: the client's socket and ours to the server. */
class Link {
  upstream: Socket | undefined
  /** Bytes of reply still allowed through in cut-reply mode; -1 means half of the next chunk. */
  cutBudget = -1
  private readonly queues: { up: Queued[], down: Queued[] } = { up: [], down: [] }
  private readonly timers: { up?: NodeJS.Timeout, down?: NodeJS.Timeout } = {}
  private readonly ended = { up: false, down: false }
  closed = false

  readonly client: Socket
  private readonly proxy: Proxy

  constructor (client: Socket, proxy: Proxy) {
    this.client = client
    this.proxy = proxy
  }

  /** Opens the server side (not while black-holed: then the client just waits). */
  open (): void {
    if (this.upstream !== undefined || this.closed) return
    const { host, port } = this.proxy.target
    const upstream = connect({ host, port })
    this.upstream = upstream
    upstream.setNoDelay(true)
    upstream.on('data', (chunk: Buffer) => this.received('down', chunk))
    upstream.on('end', () => { this.ended.down = true; this.pump('down') })
    upstream.on('error', () => {})
    // a clean close comes after 'end' and waits for the queued reply; an error closes at once
    upstream.on('close', hadError => { if (hadError || this.queues.down.length === 0) this.close() })
    if (this.proxy.mode.kind === 'blackhole') upstream.pause()
    this.pump('up')
  }

  received (direction: 'up' | 'down', chunk: Buffer): void {
    const mode = this.proxy.mode
    if (direction === 'down' && mode.kind === 'cut-reply') {
      this.cut(chunk)
      return
    }
    const due = mode.kind === 'delay' ? Date.now() + mode.ms : 0
    this.queues[direction].push({ chunk, due })
    this.pump(direction)
  }

  /** Lets part of a reply through, then closes both sides. */
  private cut (chunk: Buffer): void {
    const allowed = this.cutBudget < 0 ? Math.floor(chunk.length / 2) : this.cutBudget
    if (chunk.length <= allowed) {
      this.cutBudget = allowed - chunk.length
      this.queues.down.push({ chunk, due: 0 })
      this.pump('down')
      return
    }
    this.proxy.counters.cuts++
    const part = chunk.subarray(0, allowed)
    this.proxy.counters.bytesDown += part.length
    this.client.end(part, () => this.close())
    this.upstream?.destroy()
    // a client that never reads must not keep the link open
    setTimeout(() => this.close(), 200).unref()
  }

  /** Writes what is due, in order; waits for the rest. Nothing moves while black-holed. */
  pump (direction: 'up' | 'down'): void {
    if (this.closed) return
    clearTimeout(this.timers[direction])
    this.timers[direction] = undefined
    if (this.proxy.mode.kind === 'blackhole') return
    const to = direction === 'up' ? this.upstream : this.client
    if (to === undefined) return // the server side is not open yet: keep the bytes
    const queue = this.queues[direction]
    const now = Date.now()
    while (queue.length > 0 && queue[0].due <= now) {
      const { chunk } = queue.shift() as Queued
      if (direction === 'up') this.proxy.counters.bytesUp += chunk.length
      else this.proxy.counters.bytesDown += chunk.length
      to.write(chunk)
    }
    if (queue.length > 0) {
      this.timers[direction] = setTimeout(() => this.pump(direction), queue[0].due - now)
    } else if (this.ended[direction]) {
      to.end()
    }
  }

  pause (): void {
    this.client.pause()
    this.upstream?.pause()
  }

  resume (): void {
    this.client.resume()
    this.upstream?.resume()
    if (this.upstream === undefined) this.open()
    this.pump('up')
    this.pump('down')
  }

  markClientEnded (): void {
    this.ended.up = true
    this.pump('up')
  }

  reset (): void {
    if (this.closed) return
    this.proxy.counters.resets++
    reset(this.client)
    reset(this.upstream)
    this.close()
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timers.up)
    clearTimeout(this.timers.down)
    this.client.destroy()
    this.upstream?.destroy()
    this.proxy.links.delete(this)
  }
}

class Proxy implements FaultProxy {
  readonly host = '127.0.0.1'
  port = 0
  mode: FaultMode
  readonly target: { host: string, port: number }
  readonly links = new Set<Link>()
  readonly counters = { accepted: 0, resets: 0, cuts: 0, bytesUp: 0, bytesDown: 0 }
  private readonly server: Server
  private closing: Promise<void> | undefined

  constructor (opts: FaultProxyOptions) {
    this.target = { host: opts.target.host ?? '127.0.0.1', port: opts.target.port }
    this.mode = asMode(opts.mode ?? 'pass')
    this.server = createServer(client => this.accept(client))
  }

  get address (): string {
    return `${this.host}:${this.port}`
  }

  /** A snapshot of the counters. */
  get stats (): FaultProxyStats {
    return { ...this.counters, active: this.links.size }
  }

  async listen (port = 0): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen({ port, host: this.host }, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    this.port = (this.server.address() as { port: number }).port
  }

  url (target: string): string {
    const u = new URL(target)
    u.hostname = this.host
    u.port = String(this.port)
    return u.href
  }

  private accept (client: Socket): void {
    this.counters.accepted++
    client.on('error', () => {})
    if (this.mode.kind === 'reset' || this.closing !== undefined) {
      this.counters.resets++
      reset(client)
      return
    }
    client.setNoDelay(true)
    const link = new Link(client, this)
    this.links.add(link)
    if (this.mode.kind === 'cut-reply') link.cutBudget = this.mode.afterBytes ?? -1
    client.on('data', (chunk: Buffer) => link.received('up', chunk))
    client.on('end', () => link.markClientEnded())
    client.on('close', () => link.close())
    if (this.mode.kind === 'blackhole') {
      client.pause()
      return
    }
    link.open()
  }

  setMode (next: FaultMode | FaultMode['kind']): void {
    const mode = asMode(next)
    const was = this.mode
    this.mode = mode
    if (mode.kind === 'blackhole') {
      for (const link of this.links) link.pause()
      return
    }
    if (mode.kind === 'reset') {
      this.resetConnections()
      return
    }
    for (const link of this.links) {
      if (mode.kind === 'cut-reply') link.cutBudget = mode.afterBytes ?? -1
      if (was.kind === 'blackhole') link.resume()
    }
  }

  resetConnections (): number {
    const links = [...this.links]
    for (const link of links) link.reset()
    return links.length
  }

  close (): Promise<void> {
    this.closing ??= new Promise<void>(resolve => {
      this.server.close(() => resolve())
      for (const link of [...this.links]) link.close()
    })
    return this.closing
  }
}

/** Starts a fault proxy on 127.0.0.1 in front of `target`; close() it in a teardown. */
export async function startFaultProxy (opts: FaultProxyOptions): Promise<FaultProxy> {
  const proxy = new Proxy(opts)
  await proxy.listen(opts.port)
  return proxy
}
