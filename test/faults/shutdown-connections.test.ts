// SIGTERM to a real server process with every kind of connection open: an
// idle keep-alive one, a silent one (connected, nothing sent), one that sent
// half its headers, an event stream being written, and a request in flight.
// The request in flight finishes with 200, the stream ends with an error
// event, the others are closed, and the process exits 0 within 10 s (before,
// one silent socket kept close() waiting for 60 s).
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { request } from 'node:http'
import { bodyFor, stack } from '../helper.ts'
import { freePort } from '../support/ports.ts'
import { uniqueDatabaseUrl } from '../support/env.ts'
import { sleep, waitUntil } from '../support/wait.ts'

interface Watched { socket: Socket, text: string, closedAt: number | undefined }

function watch (port: number, send?: string): Watched {
  const w: Watched = { socket: connect({ port, host: '127.0.0.1' }), text: '', closedAt: undefined }
  w.socket.on('data', d => { w.text += d.toString() })
  w.socket.on('error', () => {})
  w.socket.on('close', () => { w.closedAt = Date.now() })
  if (send !== undefined) w.socket.write(send)
  return w
}

t.test('SIGTERM with idle, silent, half-sent, streaming and in-flight connections: exit 0 within 10 s; the request finishes, the stream ends with an error event', async t => {
  const s = await stack(t)
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, ...s.env, DATABASE_URL: await uniqueDatabaseUrl(t), PORT: String(port), LOG_LEVEL: 'warn', GENERATION_RATE_LIMIT: '0' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', d => { output = (output + String(d)).slice(-8000) })
  child.stderr?.on('data', d => { output = (output + String(d)).slice(-8000) })
  t.teardown(() => { child.kill('SIGKILL') })
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>
  await waitUntil(async () => (await fetch(`${base}/ready`)).ok, { timeoutMs: 30_000, what: 'the server' })

  // An idle keep-alive connection: one answer, then nothing.
  const idle = watch(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  await waitUntil(() => idle.text.includes('"ok"'), { timeoutMs: 5000, what: 'the idle connection\'s answer' })
  // A silent connection, and one that stops halfway through its headers.
  const silent = watch(port)
  const half = watch(port, 'POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Ty')
  await once(silent.socket, 'connect')

  // An event stream the model writes slowly (about 18 s in all).
  s.openai.setStream({ chunks: 60, delayMs: 300 })
  const streamBody = JSON.stringify(bodyFor(1))
  const sse = watch(port, `POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: ${Buffer.byteLength(streamBody)}\r\n\r\n${streamBody}`)
  await waitUntil(() => sse.text.includes('event: delta'), { timeoutMs: 10_000, what: 'the stream\'s first delta' })

  // A request in flight: the model answers it in 1.5 s.
  s.openai.setStream({ chunks: 1, delayMs: 0 })
  s.openai.setLatency(1500)
  const calls = s.openai.calls
  const inFlight = new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = request(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
      let body = ''
      res.on('data', d => { body += String(d) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end(JSON.stringify(bodyFor(2)))
  })
  await s.openai.waitForCalls(calls + 1)

  const at = Date.now()
  child.kill('SIGTERM')
  const answer = await inFlight
  t.equal(answer.status, 200, 'the request in flight finished')
  t.equal(JSON.parse(answer.body).cache.status, 'miss')
  const [code] = await exited
  const took = Date.now() - at
  t.equal(code, 0, `exit code 0${code === 0 ? '' : `\n${output}`}`)
  t.ok(took < 10_000, `exited ${took} ms after SIGTERM`)
  await sleep(100)
  t.match(sse.text, /event: error\ndata: \{"message":"the server is closing/, 'the stream ended with an error event')
  t.ok(sse.closedAt !== undefined && sse.closedAt - at < 2000, `the stream ended at once (${sse.closedAt === undefined ? 'never' : sse.closedAt - at} ms)`)
  t.ok(idle.closedAt !== undefined && idle.closedAt - at < 2000, `the idle connection was closed at once (${idle.closedAt === undefined ? 'never' : idle.closedAt - at} ms)`)
  for (const [name, w] of [['silent', silent], ['half-sent', half]] as const) {
    t.ok(w.closedAt !== undefined && w.closedAt - at < 10_000, `the ${name} connection was closed (${w.closedAt === undefined ? 'never' : w.closedAt - at} ms)`)
  }
})
