import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { bodyFor, stack } from '../helper.ts'
import { freePort } from '../support/ports.ts'
import { uniqueDatabaseUrl } from '../support/env.ts'
import { waitUntil } from '../support/wait.ts'

t.test('SIGTERM with a request in flight on a keep-alive connection: 200, then exit 0 within 10 s', async t => {
  const s = await stack(t)
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { env: { ...process.env, ...s.env, DATABASE_URL: await uniqueDatabaseUrl(t), PORT: String(port), LOG_LEVEL: 'warn' }, stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  const exited = once(child, 'exit')
  await waitUntil(async () => (await fetch(`${base}/ready`)).ok, { timeoutMs: 30_000, what: 'the server' })
  s.openai.setLatency(500)
  const inFlight = fetch(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bodyFor(1)) })
  await s.openai.waitForCalls(1)
  const at = Date.now()
  child.kill('SIGTERM')
  const res = await inFlight
  t.equal(res.status, 200)
  await res.text()
  const [code] = await exited
  t.equal(code, 0)
  t.ok(Date.now() - at < 10_000, `exited ${Date.now() - at} ms after SIGTERM`)
})
