// Free TCP port discovery for test servers.
//
// We let the kernel pick an ephemeral port (listen on :0), read it, and
// close the socket. There is an unavoidable race (another process may grab
// the port before our server binds it), but on a test machine it is rare,
// and the server starters surface a clear error if it happens.
import { createServer } from 'node:net'

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const addr = srv.address()
      if (addr === null || typeof addr === 'string') {
        srv.close()
        reject(new Error('freePort: unexpected server address ' + String(addr)))
        return
      }
      const port = addr.port
      srv.close(err => (err ? reject(err) : resolve(port)))
    })
  })
}
