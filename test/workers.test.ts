import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { exampleBody, stack } from './helper.ts'
import { loadConfig } from '../src/config.ts'
import { freePort } from './support/ports.ts'
import { sleep, waitUntil } from './support/wait.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { childPids, isProcessAlive } from './support/reaper.ts'

/** The live (not zombie) children of `pid`. */
const childrenOf = (pid: number): number[] => childPids(pid).filter(isProcessAlive).sort((x, y) => x - y)

/** The counter's value summed over its label sets in a Prometheus text exposition. */
function counterTotal (text: string, name: string): number {
  return text.split('\n').filter(l => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0)
}

t.test('WORKERS is checked with the rest of the configuration', async t => {
  for (const bad of ['0', '65', 'two', '-1']) {
    t.throws(() => loadConfig({ WORKERS: bad, REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://x@127.0.0.1/db' }), /WORKERS must be a whole number of worker processes, 1 to 64/, `WORKERS=${bad} refused`)
  }
  t.throws(() => loadConfig({ WORKERS: '2', DATABASE_URL: 'postgres://x@127.0.0.1/db' }), /REDIS_URL must be set when WORKERS is above 1/, 'workers need Redis to share the cache')
  t.throws(() => loadConfig({ WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:6379' }), /DATABASE_URL must be set when WORKERS is above 1/, 'workers cannot share the embedded database')
  t.equal(loadConfig({}).workers, 1, 'one process by default')
  t.equal(loadConfig({ WORKERS: '4', REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://x@127.0.0.1/db' }).workers, 4)
})

t.test('WORKERS=2 without Redis: the process exits 1 naming REDIS_URL, before forking', async t => {
  const env: NodeJS.ProcessEnv = { ...process.env, WORKERS: '2', PORT: '0' }
  delete env.REDIS_URL
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(stderr, /REDIS_URL/)
})

t.test('WORKERS=2: two workers on one port share the cache, the metrics and the shutdown', async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  let output = ''
  const primary: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, ...s.env, WORKERS: '2', DATABASE_URL: await uniqueDatabaseUrl(t), PORT: String(port), LOG_LEVEL: 'info', JWT_SECRET: 'workers-test-secret-workers-test-secret-0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so the test can send Ctrl-C's SIGINT to the whole group.
    detached: true
  })
  for (const stream of [primary.stdout, primary.stderr]) stream?.on('data', (d: Buffer) => { output += d.toString() })
  t.teardown(async () => {
    if (primary.exitCode === null && primary.signalCode === null) {
      try { process.kill(-(primary.pid ?? 0), 'SIGKILL') } catch {}
      await once(primary, 'exit')
    }
  })
  const primaryPid = primary.pid ?? -1
  await waitUntil(async () => (await fetch(`${base}/ready`).catch(() => undefined))?.ok === true, { timeoutMs: 60_000, what: 'the workers' })
  await waitUntil(() => childrenOf(primaryPid).length === 2, { timeoutMs: 30_000, what: 'two workers' })
  const workers = childrenOf(primaryPid)
  t.equal(workers.length, 2, 'the primary forked two workers')

  // 60 identical misses on 60 connections, spread over both workers: one model call.
  const N = 60
  const answers = await Promise.all(Array.from({ length: N }, async () => {
    const res = await fetch(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(exampleBody) })
    return { status: res.status, body: await res.json() as { narrative: unknown } }
  }))
  t.ok(answers.every(a => a.status === 200), 'all 200')
  t.equal(s.openai.calls, 1, 'one model call for both workers')
  t.equal(new Set(answers.map(a => JSON.stringify(a.body.narrative))).size, 1, 'one narrative')

  // Each worker counted only what it answered; a scrape reaching either one must show them all.
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${base}/metrics`, { headers: { connection: 'close' } })
    t.equal(res.status, 200)
    t.equal(counterTotal(await res.text(), 'narrative_requests_total'), N, `scrape ${i + 1} counts every worker's answers`)
  }

  // A worker that dies is replaced, and the service keeps answering meanwhile.
  process.kill(workers[0], 'SIGKILL')
  // (A connection handed to the worker in the instant it died would be lost: the primary learns of the death first.)
  await waitUntil(() => /worker died; starting another/.test(output), { timeoutMs: 10_000, what: 'the primary to see the death' })
  const during = await Promise.all(Array.from({ length: 20 }, async () => (await fetch(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(exampleBody), signal: AbortSignal.timeout(10_000) })).status))
  t.ok(during.every(status => status === 200), 'the surviving worker answers while the other is replaced')
  await waitUntil(() => { const now = childrenOf(primaryPid); return now.length === 2 && !now.includes(workers[0]) }, { timeoutMs: 30_000, what: 'a replacement worker' })
  const replacement = childrenOf(primaryPid).find(pid => !workers.includes(pid))
  t.ok(replacement !== undefined, 'a new worker took its place')
  await waitUntil(() => new RegExp(`"pid":${replacement},[^\\n]*Server listening`).test(output), { timeoutMs: 30_000, what: 'the replacement listening' })
  await waitUntil(async () => (await fetch(`${base}/ready`, { headers: { connection: 'close' } })).ok, { timeoutMs: 30_000, what: 'ready again' })
  t.equal(s.openai.calls, 1, 'still one model call')

  // Ctrl-C reaches the whole process group: every worker closes once, gracefully, and the primary exits 0.
  await sleep(500)
  const all = [primaryPid, ...childrenOf(primaryPid)]
  process.kill(-primaryPid, 'SIGINT')
  const [code] = await once(primary, 'exit')
  t.equal(code, 0, 'the primary exits 0')
  if (code !== 0) t.comment(output.split('\n').filter(l => !l.includes('"msg":"request"')).join('\n'))
  t.notMatch(output, /second SIGTERM|second SIGINT|killed by timeout/, 'no worker was forced')
  await waitUntil(() => all.every(pid => !isProcessAlive(pid)), { timeoutMs: 5000, what: 'every process gone' })
  t.pass('no worker outlives the primary')
})
