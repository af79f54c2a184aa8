// The connection timeouts src/app.ts states are the ones the listening server
// has: idle keep-alive connections used to close at 73 s (keepAliveTimeout
// 72 s plus Node's 1 s) while the comment said 60 s. Measuring a 66 s close
// would make a slow test; the server's own settings and the Keep-Alive header
// a client receives are what decide it.
import t from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { KEEP_ALIVE_IDLE_MS, SILENT_ANSWER_MS } from '../src/app.ts'
import { build } from './helper.ts'

t.test('keep-alive idle 65 s (above balancers\' 60 s), advertised to clients; headers 10 s, request 30 s, silent answer 60 s', async t => {
  const app = await build(t, { listen: true })
  const server = app.server
  t.equal(KEEP_ALIVE_IDLE_MS, 65_000)
  t.equal(server.keepAliveTimeout, 65_000, 'keepAliveTimeout: an idle keep-alive connection is closed after 65 s (Node adds 1 s)')
  t.ok(server.keepAliveTimeout > 60_000, 'longer than a balancer\'s 60 s idle timeout, so the balancer hangs up first')
  t.equal(server.headersTimeout, 10_000)
  t.equal(server.requestTimeout, 30_000)
  t.equal(SILENT_ANSWER_MS, 60_000)
  t.equal(server.timeout, 60_000, 'a connection silent for 60 s during an answer is closed')

  // What a client is told, on a real socket.
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n')
  const [chunk] = await once(socket, 'data') as [Buffer]
  const head = chunk.toString('latin1')
  t.match(head, /^HTTP\/1\.1 200/)
  t.match(head, /\r\nConnection: keep-alive\r\n/i)
  t.match(head, /\r\nKeep-Alive: timeout=65\r\n/i, 'Keep-Alive: timeout=65')
})
