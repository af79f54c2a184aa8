import { spawn } from 'node:child_process'
import { mintAdminToken } from '../src/admin/token.ts'
import { once } from 'node:events'
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { startRedis } from '../test/support/redis-server.ts'
import { startPostgres } from '../test/support/postgres-server.ts'
import { startFakeOpenAI } from '../test/support/fake-openai.ts'
import { freePort } from '../test/support/ports.ts'
import { waitUntil } from '../test/support/wait.ts'
import { percentile, runLoad, type LoadResult } from './load.ts'
import { treeCpuSeconds } from './process-cpu.ts'
import { APP_SCRIPT, FLOOR_SCRIPT, compileForBench } from './compiled.ts'

/**
 * npm run bench:profile [-- --seconds 10 --connections 50 --out prof]: one app
 * instance (or a floor: --target) under `node --cpu-prof`, the bench's hit-path
 * load (or misses: --misses, or chat completion hits: --chat) against it, its CPU per request, then the
 * functions that took the most self time. Open the .cpuprofile it writes
 * in Chrome DevTools (Performance, Load profile) for the whole picture.
 */
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    out: { type: 'string', default: 'prof' },
    plain: { type: 'boolean', default: false },
    /** app, or one of bench/floor-server.ts's floors (bare, redis, configured): the same load and the same CPU accounting. */
    target: { type: 'string', default: 'app' },
    /** A fixed rate (requests a second) instead of as fast as answered: CPU per request away from saturation. */
    rate: { type: 'string' },
    /** Misses instead of hits: a new profile every request, `connections` at a time (the stand-in answers in 50 ms). */
    misses: { type: 'boolean', default: false },
    /** Chat completion hits (POST /v1/chat/completions with an API key) instead of narrative hits. */
    chat: { type: 'boolean', default: false },
    /** The profiler's sampling interval in µs (node's default is 1000: too coarse for a 40 µs request). */
    interval: { type: 'string', default: '100' }
  }
})
const outDir = resolve(values.out)
/** PROFILE_ENV='A=1 B=2' passes extra variables to the app. */
const extraEnv = (): Record<string, string> => Object.fromEntries((process.env.PROFILE_ENV ?? '').split(/\s+/).filter(Boolean).map(kv => kv.split('=') as [string, string]))
mkdirSync(outDir, { recursive: true })
const profileStarted = Date.now()
const redis = await startRedis()
const pg = await startPostgres()
const openai = await startFakeOpenAI({ latencyMs: 50 })
const port = await freePort()
const profileFlags = values.plain ? [] : ['--cpu-prof', '--cpu-prof-dir', outDir, `--cpu-prof-interval=${Number(values.interval)}`]
compileForBench()
// The floors answer a constant of the hit's size (650 bytes, close to the app's hit).
const script = values.target === 'app' ? [APP_SCRIPT] : [FLOOR_SCRIPT, String(port), values.target, '650', redis.url]
const child = spawn(process.execPath, [...profileFlags, ...script], {
  env: { ...process.env, ...extraEnv(), PORT: String(port), REDIS_URL: redis.url, DATABASE_URL: pg.url, OPENAI_API_KEY: 'sk-profile', OPENAI_BASE_URL: openai.baseURL, GENERATION_RATE_LIMIT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'production', JWT_SECRET: 'profile-secret-profile-secret-profile-0' },
  stdio: ['ignore', 'ignore', 'inherit']
})
try {
  // The app is up when /ready says so; a floor when it answers anything.
  const up = async (): Promise<boolean> => {
    const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined)
    return res !== undefined && (values.target !== 'app' || res.ok)
  }
  await waitUntil(up, { timeoutMs: 60_000, what: values.target })
  let url = `http://127.0.0.1:${port}/api/narrative`
  let body: object = { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 11, Sirius: 0, Pleiades: 0.5 } }, locale: 'en' }
  const headers: Record<string, string> = {}
  if (values.chat) {
    // An API key (the database may still be migrating: ask until it is made), then the request an SDK sends.
    const token = mintAdminToken('profile-secret-profile-secret-profile-0', 'profile', 3600)
    await waitUntil(async () => {
      const made = await fetch(`http://127.0.0.1:${port}/api/keys`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ name: 'profile', rateLimit: 0 }) })
      if (made.status === 201) headers.authorization = `Bearer ${(await made.json() as { secret: string }).secret}`
      return headers.authorization !== undefined
    }, { timeoutMs: 30_000, what: 'an API key' })
    url = `http://127.0.0.1:${port}/v1/chat/completions`
    body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'profile me' }] }
  }
  await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  await new Promise(resolve => setTimeout(resolve, 200)) // the entry lands
  const pids: Record<string, number> = { app: child.pid ?? -1, postgres: pg.pid, redis: redis.pid }
  const cpuBefore = Object.entries(pids).map(([name, pid]) => [name, treeCpuSeconds(pid)] as const)
  const startedAt = Date.now()
  const loaderBefore = process.cpuUsage()
  const r = values.misses
    ? await runMisses(url, Number(values.connections), Number(values.seconds), values.chat ? headers : undefined)
    : await runLoad({ url, body, headers, connections: Number(values.connections), seconds: Number(values.seconds), ...(values.rate !== undefined ? { rate: Number(values.rate) } : {}) })
  const wall = (Date.now() - startedAt) / 1000
  const loader = process.cpuUsage(loaderBefore)
  process.stdout.write(`${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(2)} ms, p95 ${r.p95.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, errors ${r.errors} ${JSON.stringify(r.errorKinds)}\n`)
  process.stdout.write(`CPU during the load: ${cpuBefore.map(([name, before]) => `${name} ${Math.round(100 * (treeCpuSeconds(pids[name]) - before) / wall)}%`).join(', ')}; ${values.target} ${(1e6 * (treeCpuSeconds(pids.app) - cpuBefore[0][1]) / r.requests).toFixed(0)} µs of CPU per request; the load generator ${Math.round((loader.user + loader.system) / 1e4 / wall)}%, ${((loader.user + loader.system) / r.requests).toFixed(0)} µs per request\n`)
} finally {
  child.kill('SIGTERM')
  await once(child, 'exit')
  await openai.close()
  await Promise.allSettled([redis.stop(), pg.stop()])
}

/**
 * `concurrency` loops posting a distinct profile each time; the latency kept is the server's own beyond the model (Server-Timing app;dur).
 * With `chatHeaders` (--chat): a distinct chat completion request each time, and the whole request's latency (chat answers carry no Server-Timing).
 */
async function runMisses (url: string, concurrency: number, seconds: number, chatHeaders?: Record<string, string>): Promise<LoadResult> {
  const appMs: number[] = []
  const end = Date.now() + seconds * 1000
  let next = 0
  let errors = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (Date.now() < end) {
      const i = next++
      // Distinct keys for 21,000 requests (the bench's own sequence).
      const profile = { classification: 'primary', primary: 'Vega', percentages: { Vega: 10 + (i % 50), Sirius: (Math.floor(i / 50) % 60) / 2, Pleiades: (i % 7) / 2 } }
      const body = chatHeaders === undefined ? { profile, locale: 'en' } : { model: 'gpt-4o', messages: [{ role: 'user', content: `profile miss ${i}` }] }
      const t0 = performance.now()
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...chatHeaders }, body: JSON.stringify(body) })
      await res.arrayBuffer()
      const app = chatHeaders !== undefined ? String(performance.now() - t0) : /app;dur=([0-9.]+)/.exec(res.headers.get('server-timing') ?? '')?.[1]
      if (res.status !== 200 || app === undefined) errors++
      else appMs.push(Number(app))
    }
  }))
  appMs.sort((a, b) => a - b)
  return { requests: next, rps: next / seconds, p50: percentile(appMs, 50), p95: percentile(appMs, 95), p99: percentile(appMs, 99), errors, errorKinds: {}, non2xx: 0, latencies: appMs }
}

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, hitCount?: number }
// Each thread with JavaScript writes a profile of its own: the main thread's is the largest
// of those this run wrote (an --out folder used before keeps earlier runs' profiles).
const file = readdirSync(outDir).filter(f => f.endsWith('.cpuprofile')).map(f => ({ f, stat: statSync(join(outDir, f)) }))
  .filter(x => x.stat.mtimeMs >= profileStarted).sort((a, b) => b.stat.size - a.stat.size)[0]?.f
if (file !== undefined) {
  const profile = JSON.parse(readFileSync(join(outDir, file), 'utf8')) as { nodes: Node[] }
  const self = new Map<string, number>()
  let total = 0
  for (const n of profile.nodes) {
    const where = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/main\//, '')}:${n.callFrame.lineNumber + 1}`
    self.set(where, (self.get(where) ?? 0) + (n.hitCount ?? 0))
    total += n.hitCount ?? 0
  }
  process.stdout.write(`${join(outDir, file)}\nself time, top 40:\n`)
  for (const [where, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) process.stdout.write(`${(100 * hits / total).toFixed(1).padStart(5)}%  ${where}\n`)
}
