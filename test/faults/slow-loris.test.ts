// Slow-loris clients: raw sockets that send their headers (or their body) a
// byte at a time and never finish. The server must cut them off and serve
// everyone else meanwhile.
//
// Headers must be complete within min(headersTimeout, requestTimeout) = 10 s
// (src/app.ts, through Fastify's `http` options), checked every second
// (connectionsCheckingInterval), so a client that never finishes its headers
// is cut off 10 to 11 s after the server started listening. The bound
// asserted is read from the server itself. (A client that drips its body
// instead is cut off after requestTimeout, 30 s: too slow to test here.)
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { build, exampleBody, stack } from '../helper.ts'
import { sleep } from '../support/wait.ts'
import { summary, type Outcome } from './helpers.ts'

interface Loris { socket: Socket, reply: string, closedAt: number | undefined, bytesSent: number }

function loris (port: number, head: string, drip: string): Loris {
  const l: Loris = { socket: connect({ port, host: '127.0.0.1' }), reply: '', closedAt: undefined, bytesSent: 0 }
  l.socket.on('data', d => { l.reply += d.toString() })
  l.socket.on('error', () => {})
  l.socket.on('close', () => { l.closedAt = Date.now(); clearInterval(timer) })
  l.socket.write(head)
  let i = 0
  const timer = setInterval(() => {
    if (l.socket.destroyed) return
    l.socket.write(drip[i++ % drip.length])
    l.bytesSent++
  }, 400)
  timer.unref()
  return l
}

t.test('slow-loris clients (headers a byte at a time, never finished) are cut off with a 408; everyone else is served meanwhile', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const listeningAt = Date.now()
  const port = (app.server.address() as { port: number }).port
  // Node swaps the two when headersTimeout > requestTimeout: headers are due within the smaller one.
  const headersDue = Math.min(app.server.headersTimeout, app.server.requestTimeout)
  t.ok(headersDue > 0 && headersDue <= 60_000, `headers are due within ${headersDue} ms`)
  // How often Node looks for overdue requests (the app sets 1 s; Node's default is 30 s).
  const checkEvery = (app.server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval ?? 30_000
  const bound = headersDue + checkEvery + 5000

  const slow: Loris[] = Array.from({ length: 50 }, (_, i) => loris(port, `${i % 2 === 0 ? 'POST /api/narrative' : 'GET /health'} HTTP/1.1\r\nHost: x\r\nX-Slow: `, 'abcdefghij'))
  t.teardown(() => { for (const l of slow) l.socket.destroy() })

  // Others keep being served, all the while.
  const served: Outcome[] = []
  const url = `http://127.0.0.1:${port}/api/narrative`
  let i = 0
  while (slow.some(l => l.closedAt === undefined) && Date.now() - listeningAt < bound) {
    const at = Date.now()
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...exampleBody, userId: `u-${i++}` }) })
    await res.arrayBuffer()
    served.push({ code: res.status, status: res.headers.get('x-cache') ?? undefined, ms: Date.now() - at, at, body: '' })
    await sleep(500)
  }
  const open = slow.filter(l => l.closedAt === undefined)
  t.same(open.map(l => `${l.bytesSent} bytes sent`), [], `every slow client was cut off within ${bound} ms of listening`)
  const cutAfter = slow.map(l => (l.closedAt ?? Date.now()) - listeningAt)
  t.comment(`cut off ${Math.min(...cutAfter)} to ${Math.max(...cutAfter)} ms after the server started listening`)
  t.same(slow.filter(l => !/^HTTP\/1\.1 408 /.test(l.reply)).map(l => l.reply.slice(0, 40)), [], 'each with a 408')
  t.same(slow.filter(l => !/"code":"NARR_REQUEST_TIMEOUT".*headers within 10 s/.test(l.reply)).map(l => l.reply.slice(-120)), [], 'in the app\'s shape, saying what was too slow')
  t.comment(`meanwhile: ${summary(served)}`)
  // One request every half second or so, for as long as the slow clients were held.
  const expected = Math.floor((Math.min(...cutAfter) - 1000) / 1000)
  t.ok(served.length >= expected, `other clients were served throughout (${served.length}, at least ${expected})`)
  t.same(served.filter(o => o.code !== 200 || o.ms > 1000).map(o => `${o.code} ${o.ms} ms`), [], 'each promptly')
})
