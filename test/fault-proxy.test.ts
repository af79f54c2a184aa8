import t, { type Test } from 'tap'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { startFaultProxy, type FaultProxy } from './support/fault-proxy.ts'
import { sharedRedisUrl, uniquePrefix } from './support/env.ts'
import { sleep, waitUntil } from './support/wait.ts'

/** A TCP server that echoes, or answers every chunk with `reply` when given. */
async function startEcho (t: Test, reply?: Buffer): Promise<Server> {
  const sockets = new Set<Socket>()
  const server = createServer(socket => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.on('data', chunk => socket.write(reply ?? chunk))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>(resolve => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return server
}

const portOf = (server: Server): number => (server.address() as { port: number }).port

async function proxyFor (t: Test, server: Server | number): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: { port: typeof server === 'number' ? server : portOf(server) } })
  t.teardown(() => proxy.close())
  return proxy
}

/** A client socket that collects what it receives and how it ended. */
interface Probe {
  socket: Socket
  received: () => string
  ended: Promise<{ error: string | undefined }>
}

async function probe (t: Test, port: number): Promise<Probe> {
  const socket = connect({ port, host: '127.0.0.1' })
  t.teardown(() => { socket.destroy() })
  let data = ''
  let error: string | undefined
  socket.on('data', d => { data += d.toString() })
  socket.on('error', err => { error = (err as NodeJS.ErrnoException).code ?? err.message })
  const ended = new Promise<{ error: string | undefined }>(resolve => socket.on('close', () => resolve({ error })))
  await once(socket, 'connect')
  return { socket, received: () => data, ended }
}

const within = async <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  await Promise.race([p, sleep(ms).then(() => 'timeout' as const)])

t.test('pass: bytes go both ways untouched and are counted', async t => {
  const proxy = await proxyFor(t, await startEcho(t))
  const c = await probe(t, proxy.port)
  c.socket.write('hello')
  await waitUntil(() => c.received() === 'hello', { timeoutMs: 2000, what: 'the echo' })
  t.equal(proxy.stats.accepted, 1)
  t.equal(proxy.stats.active, 1)
  t.equal(proxy.stats.bytesUp, 5)
  t.equal(proxy.stats.bytesDown, 5)
  t.equal(proxy.address, `127.0.0.1:${proxy.port}`)
  t.equal(proxy.url('redis://10.0.0.1:6379/2'), `redis://127.0.0.1:${proxy.port}/2`)
  t.equal(proxy.url('postgres://postgres@db:5432/x'), `postgres://postgres@127.0.0.1:${proxy.port}/x`)
  c.socket.end()
  await c.ended
  await waitUntil(() => proxy.stats.active === 0, { timeoutMs: 2000, what: 'the link to close' })
})

t.test('delay: each way is late by the delay, order is kept, and switching back is immediate', async t => {
  const proxy = await proxyFor(t, await startEcho(t))
  const c = await probe(t, proxy.port)
  proxy.setMode({ kind: 'delay', ms: 150 })
  t.same(proxy.mode, { kind: 'delay', ms: 150 })
  const started = Date.now()
  for (let i = 0; i < 20; i++) {
    c.socket.write(`${i},`)
    await sleep(2)
  }
  const expected = Array.from({ length: 20 }, (_, i) => `${i},`).join('')
  await waitUntil(() => c.received() === expected, { timeoutMs: 3000, intervalMs: 5, what: 'the delayed echo' })
  const took = Date.now() - started
  t.ok(took >= 300, `twice the delay, once each way (${took} ms)`)
  t.equal(c.received(), expected, 'in order')

  proxy.setMode('pass')
  const again = Date.now()
  c.socket.write('now')
  await waitUntil(() => c.received().endsWith('now'), { timeoutMs: 2000, intervalMs: 5, what: 'the undelayed echo' })
  t.ok(Date.now() - again < 100, 'no delay once switched back')
})

t.test('blackhole: connections are accepted but nothing is answered; healed, the held bytes flow in order', async t => {
  const proxy = await proxyFor(t, await startEcho(t))
  const open = await probe(t, proxy.port)
  open.socket.write('a')
  await waitUntil(() => open.received() === 'a', { timeoutMs: 2000, what: 'the first echo' })

  proxy.setMode('blackhole')
  open.socket.write('b')
  const late = await probe(t, proxy.port) // a new connection is accepted too
  late.socket.write('c')
  await sleep(300)
  t.equal(open.received(), 'a', 'an open connection gets no answer')
  t.equal(late.received(), '', 'nor does a new one')
  t.equal(proxy.stats.active, 2, 'both are held open')

  proxy.setMode('pass')
  await waitUntil(() => open.received() === 'ab' && late.received() === 'c', { timeoutMs: 2000, what: 'the held bytes' })
  t.pass('healed: what was sent during the black hole is delivered, in order')
})

t.test('reset: open and new connections get a TCP reset; back to pass, new connections work', async t => {
  const proxy = await proxyFor(t, await startEcho(t))
  const open = await probe(t, proxy.port)
  proxy.setMode('reset')
  t.same(await within(open.ended, 2000), { error: 'ECONNRESET' }, 'the open connection is reset')
  const refused = connect({ port: proxy.port, host: '127.0.0.1' })
  const [outcome] = await Promise.race([once(refused, 'error'), once(refused, 'close').then(() => [{ code: 'closed' }])])
  t.equal((outcome as NodeJS.ErrnoException).code, 'ECONNRESET', 'a new connection is reset')
  t.ok(proxy.stats.resets >= 2)

  proxy.setMode('pass')
  const fresh = await probe(t, proxy.port)
  fresh.socket.write('ok')
  await waitUntil(() => fresh.received() === 'ok', { timeoutMs: 2000, what: 'the echo after reset mode' })
})

t.test('resetConnections resets what is open, once, and leaves the mode alone', async t => {
  const proxy = await proxyFor(t, await startEcho(t))
  const a = await probe(t, proxy.port)
  const b = await probe(t, proxy.port)
  await waitUntil(() => proxy.stats.active === 2, { timeoutMs: 2000, what: 'two links' })
  t.equal(proxy.resetConnections(), 2)
  t.same(await within(a.ended, 2000), { error: 'ECONNRESET' })
  t.same(await within(b.ended, 2000), { error: 'ECONNRESET' })
  t.same(proxy.mode, { kind: 'pass' })
  const c = await probe(t, proxy.port)
  c.socket.write('still')
  await waitUntil(() => c.received() === 'still', { timeoutMs: 2000, what: 'a new connection' })
})

t.test('cut-reply: the reply is cut after the allowed bytes and both sides are closed', async t => {
  const reply = Buffer.alloc(1000, 'x')
  const proxy = await proxyFor(t, await startEcho(t, reply))
  const whole = await probe(t, proxy.port)
  whole.socket.write('q')
  await waitUntil(() => whole.received().length === 1000, { timeoutMs: 2000, what: 'a whole reply in pass mode' })

  proxy.setMode({ kind: 'cut-reply', afterBytes: 10 })
  const cut = await probe(t, proxy.port)
  cut.socket.write('q')
  const end = await within(cut.ended, 2000)
  t.not(end, 'timeout', 'the connection was closed')
  t.equal(cut.received(), 'x'.repeat(10), 'exactly the allowed bytes arrived')
  t.equal(await within(whole.ended, 50), 'timeout', 'an open connection is not touched until a reply comes')
  whole.socket.write('q')
  await within(whole.ended, 2000)
  t.equal(whole.received().length, 1010, 'then its reply is cut too')

  proxy.setMode('cut-reply') // half of the next chunk
  const half = await probe(t, proxy.port)
  half.socket.write('q')
  await within(half.ended, 2000)
  t.equal(half.received().length, 500, 'half of the reply')
  t.equal(proxy.stats.cuts, 3)
})

t.test('target down: the client connection is closed, not hung', async t => {
  const server = await startEcho(t)
  const port = portOf(server)
  const proxy = await proxyFor(t, port)
  await new Promise<void>(resolve => server.close(() => resolve()))
  const c = await probe(t, proxy.port)
  t.not(await within(c.ended, 2000), 'timeout')
})

t.test('with a real Redis and ioredis: commands pass, time out in a black hole, resume healed with no misaligned reply', async t => {
  const target = new URL(await sharedRedisUrl(t))
  const proxy = await proxyFor(t, Number(target.port))
  const redis = new Redis(proxy.url(target.href), { commandTimeout: 500, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true })
  redis.on('error', () => {})
  t.teardown(() => { redis.disconnect() })
  await redis.connect()
  const key = uniquePrefix('proxy')
  await redis.set(`${key}:a`, 'A', 'PX', 60_000)
  await redis.set(`${key}:b`, 'B', 'PX', 60_000)
  t.equal(await redis.get(`${key}:a`), 'A')

  proxy.setMode('blackhole')
  const started = Date.now()
  await t.rejects(redis.get(`${key}:a`), /timed out/i, 'a command in the black hole times out')
  t.ok(Date.now() - started < 600)

  proxy.setMode('pass')
  // The timed-out GET is answered late and matched to itself, not to the next command.
  t.equal(await redis.get(`${key}:b`), 'B', 'the next reply is the right one')
  t.equal(await redis.get(`${key}:a`), 'A')

  proxy.setMode({ kind: 'delay', ms: 100 })
  const slow = Date.now()
  t.equal(await redis.get(`${key}:a`), 'A')
  t.ok(Date.now() - slow >= 200, 'delayed both ways')
  proxy.setMode('pass')

  proxy.resetConnections()
  await t.rejects(redis.get(`${key}:a`), 'a reset connection fails the command')
  await waitUntil(() => redis.status === 'ready', { timeoutMs: 5000, what: 'ioredis to reconnect' })
  t.equal(await redis.get(`${key}:b`), 'B', 'reconnected through the proxy')
  await redis.del(`${key}:a`, `${key}:b`)
})

t.test('close() ends every connection and stops listening', async t => {
  const proxy = await startFaultProxy({ target: { port: portOf(await startEcho(t)) } })
  const c = await probe(t, proxy.port)
  await proxy.close()
  t.not(await within(c.ended, 1000), 'timeout', 'open connection closed')
  const refused = connect({ port: proxy.port, host: '127.0.0.1' })
  const [err] = await once(refused, 'error')
  t.equal((err as NodeJS.ErrnoException).code, 'ECONNREFUSED')
  await proxy.close() // idempotent
})
