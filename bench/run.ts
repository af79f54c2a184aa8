import { mintAdminToken } from '../src/admin/token.ts'
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { writeFile, readFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { startRedis } from '../test/support/redis-server.ts'
import { startPostgres } from '../test/support/postgres-server.ts'
import { lastUserMessage, startFakeOpenAI } from '../test/support/fake-openai.ts'
import { startFaultProxy } from '../test/support/fault-proxy.ts'
import { freePort } from '../test/support/ports.ts'
import { waitUntil } from '../test/support/wait.ts'
import { postSse } from '../test/support/sse-client.ts'
import { combineRuns, median, percentile, runLoad, type LoadResult } from './load.ts'
import { treeCpuSeconds } from './process-cpu.ts'
import { zipfSampler } from './zipf.ts'
import { APP_SCRIPT, FLOOR_SCRIPT, compileForBench } from './compiled.ts'
import { startNginx } from '../test/support/fleet.ts'

/**
 * npm run bench [-- --quick]: starts its own Redis, PostgreSQL, the OpenAI
 * stand-in and the app instances, drives load with autocannon, prints a table
 * and writes bench/RESULTS.md. Not part of npm test.
 */
const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, 'model-ms': { type: 'string' }, node: { type: 'string', multiple: true }, only: { type: 'string' } } })
// --only pay-once: just the scenarios that count model calls per distinct prompt (3 and 4); the
// table is printed, bench/RESULTS.md is left as it is. For checking the pay-once targets quickly.
const onlyPayOnce = values.only === 'pay-once'
// --only fleet: just the fleet scenario (three instances behind nginx against one behind the same
// nginx); its section of bench/RESULTS.md is rewritten, the rest of the file is kept.
const onlyFleet = values.only === 'fleet'
// --only rollout: just the prompt-change scenario (7); its figures replace the rollout block of bench/RESULTS.md.
const onlyRollout = values.only === 'rollout'
// --only chat: just the OpenAI-compatible endpoint's scenario (8); its figures replace the chat block of bench/RESULTS.md.
const onlyChat = values.only === 'chat'
// --only hits, --only misses: just the hit path (1) or the misses and streaming (2 and 5); the
// table is printed, bench/RESULTS.md is left as it is. For checking the speed targets quickly.
const onlyHits = values.only === 'hits'
const onlyMisses = values.only === 'misses'
const onlyPrinted = onlyPayOnce || onlyHits || onlyMisses
if (values.only !== undefined && !onlyPrinted && !onlyFleet && !onlyRollout && !onlyChat) throw new Error(`--only takes pay-once, hits, misses, fleet, rollout or chat, not ${values.only}`)
// --node PATH (repeatable): run every scenario with the app and the floors on each of these
// Node.js binaries in turn, in one run, and report them side by side. Default: this Node.
const nodes = values.node ?? [process.execPath]
const versionOf = (bin: string): string => execFileSync(bin, ['--version']).toString().trim()
const nodeVersions = nodes.map(versionOf)
const quick = values.quick
// Quick: a 300 ms model (the overhead is measured beyond it), 2 s runs, one pass at 1,000 connections.
const modelMs = Number(values['model-ms'] ?? (quick ? 300 : 1100))
const secs = quick ? 2 : 10
const started = Date.now()
const children: ChildProcess[] = []
/** Figures by section and measure, one per Node binary (the index in `nodes`). */
const rows = new Map<string, { section: string, name: string, values: string[] }>()
let nodeIndex = 0
let nodeBin = nodes[0]
const log = (msg: string): void => { process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`) }
const ms = (x: number): string => `${x.toFixed(2)} ms`
const record = (section: string, name: string, value: string): void => {
  const id = `${section}\u0000${name}`
  const row = rows.get(id) ?? { section, name, values: nodes.map(() => '') }
  row.values[nodeIndex] = value
  rows.set(id, row)
  log(`${nodes.length > 1 ? `[${nodeVersions[nodeIndex]}] ` : ''}${section} | ${name}: ${value}`)
}

compileForBench()
const redis = await startRedis({ args: ['--maxmemory', '2gb', '--maxmemory-policy', 'allkeys-lru'] })
const pg = await startPostgres()
const openai = await startFakeOpenAI({ latencyMs: modelMs, streamChunks: 10, streamDelayMs: 0 })
const redisClient = new Redis(redis.url)
// Scenario 4b kills Redis: this client reconnects, its errors meanwhile are expected.
redisClient.on('error', () => {})

async function cleanup (): Promise<void> {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  redisClient.disconnect()
  await openai.close()
  await Promise.allSettled([redis.stop(), pg.stop()])
}
process.on('SIGINT', () => { cleanup().then(() => process.exit(130), () => process.exit(130)) })

async function spawnServer (args: string[], env: Record<string, string>, port: number): Promise<ChildProcess> {
  const child = spawn(nodeBin, args, { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(child)
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/health`, { method: args[0] === FLOOR_SCRIPT ? 'POST' : 'GET' }).catch(() => undefined)) !== undefined, { timeoutMs: 60_000, what: `server on ${port}` })
  return child
}

/**
 * `n` app instances on one database; `workers` worker processes each (WORKERS).
 * `viaDatabase` rewrites the database URL the apps get (a fault proxy in front of PostgreSQL).
 */
async function startApps (n: number, prefix: string, workers = 1, viaDatabase = (url: string) => url, extraEnv: Record<string, string> = {}, database?: string): Promise<Array<{ port: number, url: string, child: ChildProcess }>> {
  const dbName = database ?? `bench_${prefix}_node${nodeIndex}`
  if (database === undefined) execFileSync('psql', [pg.url, '-qc', `CREATE DATABASE ${dbName}`])
  const databaseUrl = viaDatabase(pg.url.replace(/\/[^/]*$/, `/${dbName}`))
  const apps = []
  for (let i = 0; i < n; i++) {
    const port = await freePort()
    const child = await spawnServer([APP_SCRIPT], {
      REDIS_URL: redis.url,
      DATABASE_URL: databaseUrl,
      OPENAI_API_KEY: 'sk-bench',
      OPENAI_BASE_URL: openai.baseURL,
      OPENAI_TIMEOUT_MS: String(Math.max(10_000, modelMs * 5)),
      CACHE_PREFIX: prefix,
      GENERATION_RATE_LIMIT: '0',
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      JWT_SECRET: 'bench-secret-bench-secret-bench-secret-0',
      WORKERS: String(workers),
      ...extraEnv
    }, port)
    apps.push({ port, url: `http://127.0.0.1:${port}/api/narrative`, child })
  }
  return apps
}

async function stopAll (list: Array<{ child: ChildProcess }>): Promise<void> {
  for (const { child } of list) {
    if (child.exitCode !== null) continue
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
}

/** A distinct valid profile per i (percentages sum under 100; 21,000 before they repeat). */
function body (i: number): object {
  const a = 10 + (i % 50)
  const b = Math.floor(i / 50) % 60
  return { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: a, Sirius: b / 2, Pleiades: (i % 7) / 2 } }, locale: 'en' }
}

async function post (url: string, b: object): Promise<{ status: number, json: { cache: { status: string } } }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) })
  return { status: res.status, json: await res.json() as { cache: { status: string } } }
}

/** `floor`: the bare floor's result, or the ratio to it already worked out (the median of paired runs). */
function loadRow (section: string, label: string, r: LoadResult, floor?: LoadResult | number): void {
  const ratio = floor === undefined ? '' : ` (${(typeof floor === 'number' ? floor : r.rps / floor.rps).toFixed(2)} of the bare floor)`
  const kinds = Object.entries(r.errorKinds).map(([kind, n]) => `${kind} ${n}`).join(', ')
  record(section, label, `${Math.round(r.rps)} req/s${ratio}, p50 ${ms(r.p50)}, p95 ${ms(r.p95)}, p99 ${ms(r.p99)}, errors ${r.errors}${kinds === '' ? '' : ` (${kinds})`}, non-2xx ${r.non2xx}`)
}

/**
 * The fleet: 1,000 connections through a real nginx (ops/nginx/narrative-proxy.conf)
 * to three instances, and through the same nginx configuration to one instance;
 * a hit workload over 50 pre-built keys, the runs taken in turn.
 */
async function fleetScenario (): Promise<void> {
  const apps = await startApps(3, `fleet${nodeIndex}`)
  const three = await startNginx(apps.map(a => a.port))
  const one = await startNginx([apps[0].port])
  try {
    for (let i = 0; i < 50; i++) await post(`${three.url}/api/narrative`, body(900_000 + i))
    const connections = 1000
    const seconds = quick ? 3 : 10
    const runs: Record<'one' | 'three', LoadResult[]> = { one: [], three: [] }
    for (let pass = 0; pass < (quick ? 1 : 2); pass++) {
      for (const [name, lb] of [['one', one], ['three', three]] as const) {
        // One body per run (autocannon sends one body); a different hot key each pass.
        runs[name].push(await runLoad({ url: `${lb.url}/api/narrative`, body: body(900_000 + pass * 7 + (name === 'one' ? 0 : 3)), connections, seconds }))
      }
    }
    const a = combineRuns(runs.one)
    const b = combineRuns(runs.three)
    loadRow('fleet (nginx, 1,000 connections, hits)', 'one instance behind nginx', a)
    loadRow('fleet (nginx, 1,000 connections, hits)', 'three instances behind nginx', b)
    record('fleet (nginx, 1,000 connections, hits)', 'three against one', `${(b.rps / a.rps).toFixed(2)}× the throughput; p95 ${ms(b.p95)} against ${ms(a.p95)}`)
  } finally {
    await Promise.allSettled([three.stop(), one.stop()])
    await stopAll(apps)
  }
}

/** Scenarios 1, 2 and 5: requests a second, overheads, streaming. */
async function speedScenarios (): Promise<void> {
  // Each --node pass starts with the stand-in as configured (the cost scenarios change its latency).
  openai.reset()
  openai.setLatency(modelMs)
  if (!onlyMisses) await hitPathScenario()
  if (!onlyHits) await missScenarios()
}

/** A server the hit scenarios load: where to send, its process (for its CPU), and the headers it needs. */
/** `body`: this target's own request body, instead of the one every target shares. */
interface LoadTarget { label: string, url: string, pid: number | undefined, headers?: Record<string, string>, body?: unknown }

/**
 * Sets each target against the bare floor (the first target), in a duel of
 * short runs taken in turn: floor, target, floor, target, ..., floor, `pairs`
 * runs of the target of `seconds` each. Records each one's requests a second,
 * its ratio to the floor and its CPU per request. On this machine the same
 * server's figure can halve or double within seconds, so each run of a target
 * is set against the floor's runs right before and right after it (the
 * conditions it met), the runs are short and back to back (neither server is
 * idle more than one run), and a target's ratio is the median of its runs'
 * ratios. Its CPU per request is set against the floor's the same way.
 */
/** How long each target is loaded, unrecorded, before its first measured run (compareWithFloor). */
const WARM_SECONDS = quick ? 1 : 4

async function compareWithFloor (section: string, targets: LoadTarget[], sharedBody: unknown, connections: number, pairs: number, seconds: number): Promise<void> {
  const runs = targets.map(() => [] as LoadResult[])
  // Each target's runs' ratio to the floor around them (none for the floor itself).
  const ratios = targets.map(() => [] as number[])
  // The server's CPU time (user + system, its process tree) per request answered, run by run:
  // what the target itself spends on a request, whoever else the machine is busy with.
  const cpuPerRequest = targets.map(() => [] as number[])
  const cpuRatios = targets.map(() => [] as number[])
  const load = async (i: number, recorded = true): Promise<{ run: LoadResult, cpu: number }> => {
    const { url, headers, pid } = targets[i]
    const body = targets[i].body ?? sharedBody
    const cpuBefore = treeCpuSeconds(pid ?? 0)
    const run = await runLoad({ url, body, headers, connections, seconds: recorded ? seconds : WARM_SECONDS })
    const cpu = (treeCpuSeconds(pid ?? 0) - cpuBefore) / Math.max(1, run.requests) * 1e6
    if (recorded) {
      cpuPerRequest[i].push(cpu)
      runs[i].push(run)
    }
    return { run, cpu }
  }
  // Seconds under load first, unrecorded, for the floor and then for each target as
  // its turn comes: a process left idle during the others' runs (over V8's 8 s
  // memory-reducer delay) comes back slower for seconds, and the more code it runs per
  // request, the longer (measured: the app's first second after 10 s idle took 2-3× its
  // CPU per request, and it took 3-4 s to recover; with a 1 s warm-up, the first two
  // runs of the app's duel came out at 0.40 and 0.52 of the floor, the rest 0.64 to 1.05).
  // The steady state is what is compared, for every target alike. The floor runs
  // throughout, never idle for long.
  await load(0, false)
  let floorBefore = await load(0)
  for (let i = 1; i < targets.length; i++) {
    await load(i, false)
    for (let pair = 0; pair < pairs; pair++) {
      const { run, cpu } = await load(i)
      const floorAfter = await load(0)
      ratios[i].push(run.rps / ((floorBefore.run.rps + floorAfter.run.rps) / 2))
      cpuRatios[i].push(cpu / ((floorBefore.cpu + floorAfter.cpu) / 2))
      floorBefore = floorAfter
    }
  }
  const results = runs.map(combineRuns)
  const list = (xs: number[], digits: number): string => xs.map(x => x.toFixed(digits)).join(', ')
  for (const [i, target] of targets.entries()) {
    loadRow(section, target.label, results[i], i === 0 ? undefined : median(ratios[i]))
    if (pairs > 1 || i === 0) {
      const own = runs[i].map(r => `${Math.round(r.rps)}`).join(', ') + ' req/s'
      record(section, i === 0 ? `${target.label}: its ${runs[i].length} runs of ${seconds} s, before and after every run of the others` : `${target.label}: its ${pairs} runs of ${seconds} s`,
        i === 0 ? own : `${own}; against the mean of the floor's runs right before and after each: ${list(ratios[i], 2)}`)
    }
    record(section, `${target.label}: the server's CPU per request (user + system, median of its runs)`, `${median(cpuPerRequest[i]).toFixed(1)} µs` + (runs[i].length > 1 ? ` (runs: ${list(cpuPerRequest[i], 0)})` : '') +
      (i === 0 ? '' : `; against the floor's runs right before and after each, median ${median(cpuRatios[i]).toFixed(2)}× (${list(cpuRatios[i], 2)})`))
  }
}

/** Scenario 1: hits against their floors, in requests a second. */
async function hitPathScenario (): Promise<void> {
  log('hit path: starting the app (one process, and two workers) and the three floors')
  const [app] = await startApps(1, 'hit')
  const [app2] = await startApps(1, 'hitworkers', 2)
  const hitBody = body(1)
  const warm = await post(app.url, hitBody)
  // Each worker keeps its own in-process tier: warm both (connections go round robin).
  for (let i = 0; i < 4; i++) await fetch(app2.url, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(hitBody) })
  const sample = await fetch(app.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hitBody) })
  const size = (await sample.text()).length
  const barePort = await freePort()
  const redisPort = await freePort()
  const configuredPort = await freePort()
  const bare = await spawnServer([FLOOR_SCRIPT, String(barePort), 'bare', String(size)], {}, barePort)
  const withRedis = await spawnServer([FLOOR_SCRIPT, String(redisPort), 'redis', String(size), redis.url], {}, redisPort)
  const configured = await spawnServer([FLOOR_SCRIPT, String(configuredPort), 'configured', String(size)], {}, configuredPort)
  log(`warmed (${warm.json.cache.status}); response ${size} bytes`)
  const targets = [
    { label: 'floor: bare POST', url: `http://127.0.0.1:${barePort}/api/narrative`, pid: bare.pid },
    { label: 'floor: POST + one Redis GET', url: `http://127.0.0.1:${redisPort}/api/narrative`, pid: withRedis.pid },
    { label: 'floor: Fastify configured like the app, no cache', url: `http://127.0.0.1:${configuredPort}/api/narrative`, pid: configured.pid },
    { label: 'narrative hit, one process (WORKERS=1, the default)', url: app.url, pid: app.child.pid },
    { label: 'narrative hit, two workers (WORKERS=2, one per core)', url: app2.url, pid: app2.child.pid }
  ]
  // At 50 connections each target takes turns with the floor in twelve runs
  // of a second (compareWithFloor says why). At 1,000 connections
  // every target is run twice: a process's first run at that many
  // connections has shown timeouts that the second does not.
  // Each target's first seconds under load are slower (its code still being
  // optimized): one unrecorded run each first (2 s; 1 s in quick mode, which must stay under a
  // minute), so the first measured round is not the warm-up.
  for (const target of targets) await runLoad({ url: target.url, body: hitBody, connections: 50, seconds: quick ? 1 : 2 })
  const passes = quick ? [[50, '', 3, 1], [1000, '', 1, secs]] as const : [[50, '', 12, 1], [1000, ', first run', 1, secs], [1000, ', second run', 1, secs]] as const
  for (const [connections, pass, pairs, seconds] of passes) {
    if (onlyHits && connections !== 50) continue
    const section = `1. hit path, ${connections} connections${pass}`
    await compareWithFloor(section, targets, hitBody, connections, pairs, seconds)
  }
  const rss = Number(/process_resident_memory_bytes (\d+)/.exec(await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text())?.[1])
  record('6. memory', 'resident memory of the hit-path instance after the runs', `${(rss / 1048576).toFixed(0)} MiB`)
  await stopAll(children.splice(0).map(child => ({ child })))
}

/** Scenarios 2 and 5: a miss's time beyond the model's, and the time to a stream's first delta. */
async function missScenarios (): Promise<void> {
  const [a] = await startApps(1, 'miss')
  const [a2] = await startApps(1, 'missworkers', 2)
  // Each miss says how long it waited on the model (Server-Timing model;dur):
  // what the client saw beyond that is the overhead. Misses one at a time,
  // then four at a time (their model calls end together, so their answers
  // queue on one event loop). The stand-in's own overhead over its
  // configured latency is measured apart, for reference.
  const spread = (xs: number[]): string => { xs.sort((x, y) => x - y); return `p50 ${ms(percentile(xs, 50))}, p95 ${ms(percentile(xs, 95))}, p99 ${ms(percentile(xs, 99))}` }
  let next = 10_000
  const missOverheads = async (n: number, together: number, url = a.url): Promise<{ client: number[], server: number[] }> => {
    const client: number[] = []
    const server: number[] = []
    for (let i = 0; i < n; i += together) {
      await Promise.all(Array.from({ length: together }, async () => {
        const t0 = performance.now()
        const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(next++)) })
        const json = await res.json() as { cache: { status: string } }
        const total = performance.now() - t0
        if (json.cache.status !== 'miss') throw new Error(`expected a miss, got ${json.cache.status}`)
        const timing = res.headers.get('server-timing') ?? ''
        const model = Number(/model;dur=([0-9.]+)/.exec(timing)?.[1])
        if (!Number.isFinite(model)) throw new Error(`a miss without Server-Timing: ${timing}`)
        client.push(total - model)
        server.push(Number(/app;dur=([0-9.]+)/.exec(timing)?.[1]))
      }))
    }
    return { client, server }
  }
  // A fresh process's first misses also pay for compiling their code and
  // opening its PostgreSQL pool's connections: warm it first, as the hit
  // path's instances are warmed, and measure the steady state.
  await missOverheads(quick ? 4 : 12, 4)
  const alone = await missOverheads(quick ? 8 : 60, 1)
  record('2. miss overhead', `one miss at a time (${alone.client.length}): seen by the client, beyond the model call`, spread(alone.client))
  record('2. miss overhead', 'one miss at a time: in the server, beyond the model call (Server-Timing app;dur)', spread(alone.server))
  // What the client side costs on its own: the same fetch, one at a time, to a route with nothing behind it.
  const roundTrips: number[] = []
  for (let i = 0; i < alone.client.length; i++) {
    const t0 = performance.now()
    await (await fetch(`http://127.0.0.1:${a.port}/health`)).json()
    roundTrips.push(performance.now() - t0)
  }
  record('2. miss overhead', 'for reference: the same client\'s whole round trip to GET /health, one at a time', spread(roundTrips))
  const four = await missOverheads(quick ? 12 : 100, 4)
  record('2. miss overhead', `four misses at a time (${four.client.length}): seen by the client, beyond the model call`, spread(four.client))
  record('2. miss overhead', 'four misses at a time: in the server, beyond the model call (Server-Timing app;dur)', spread(four.server))
  // Both workers warm first, as the one-process instance was.
  await missOverheads(quick ? 4 : 40, 2, a2.url)
  const fourOnTwo = await missOverheads(quick ? 12 : 100, 4, a2.url)
  record('2. miss overhead', `four misses at a time, two workers (${fourOnTwo.client.length}): seen by the client, beyond the model call`, spread(fourOnTwo.client))
  record('2. miss overhead', 'four misses at a time, two workers: in the server, beyond the model call (Server-Timing app;dur)', spread(fourOnTwo.server))
  const standIn: number[] = []
  for (let i = 0; i < (quick ? 3 : 25); i++) {
    await Promise.all([0, 1, 2, 3].map(async () => {
      const t0 = performance.now()
      const res = await fetch(`${openai.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' }, body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'x' }] }) })
      await res.text()
      standIn.push(performance.now() - t0 - modelMs)
    }))
  }
  record('2. miss overhead', `for reference: the stand-in called directly, four at a time, beyond its ${modelMs} ms`, spread(standIn))

  // 5. Streaming: time to first delta.
  const firstDelta = async (b: object): Promise<number> => {
    const t0 = performance.now()
    let first = NaN
    await postSse(a.url, b, { onEvent: e => { if (e.event === 'delta' && Number.isNaN(first)) first = performance.now() - t0 } })
    return first
  }
  openai.setStream({ chunks: 10, delayMs: Math.round(modelMs / 10) })
  openai.setLatency(0)
  const missFirst: number[] = []
  const hitFirst: number[] = []
  for (let i = 0; i < (quick ? 3 : 10); i++) {
    missFirst.push(await firstDelta(body(20_000 + i)))
    hitFirst.push(await firstDelta(body(20_000 + i)))
  }
  record('5. streaming', `time to first delta, miss (model streams over ${modelMs} ms)`, `median ${ms(median(missFirst))}`)
  record('5. streaming', 'time to first delta, hit', `median ${ms(median(hitFirst))}`)
  openai.setStream({ chunks: 10, delayMs: 0 })
  openai.setLatency(modelMs)
  await stopAll([a, a2])
}

/** Model calls against distinct prompts, from what the stand-in received. */
function paidPerPrompt (): { calls: number, prompts: number, text: string } {
  const calls = openai.calls
  const prompts = new Set(openai.requests.map(r => lastUserMessage(r.body))).size
  return { calls, prompts, text: `${calls} model calls for ${prompts} distinct prompts: ${(calls / Math.max(1, prompts)).toFixed(3)} per prompt` }
}

/**
 * When a prompt was paid more than once, logs what the instances saw (a
 * diagnosis, not a figure): when each extra call came, against the fault, and
 * the counters that tell how a build went ahead.
 */
async function explainRepaid (apps: Array<{ port: number }>, t0: number, faultAt: number): Promise<void> {
  const times = new Map<string, number[]>()
  for (const r of openai.requests) {
    const prompt = lastUserMessage(r.body)
    times.set(prompt, [...(times.get(prompt) ?? []), r.at])
  }
  for (const [prompt, at] of times) {
    if (at.length > 1) log(`  paid ${at.length}×: ${prompt.slice(0, 60)}… at ${at.map(x => `${x - t0} ms`).join(', ')} (the fault at ${faultAt - t0} ms)`)
  }
  const wanted = /^narrative_(repaid_generations|durable_reads_given_up|build_claim_waits|builds_without_claim|model_calls|redis_errors)_total\S* \d+/gm
  for (const [i, a] of apps.entries()) {
    const text = await (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text().catch(() => '')
    log(`  instance ${i + 1}: ${(text.match(wanted) ?? []).join(', ')}`)
  }
}

interface CostRun {
  section: string
  prefix: string
  total: number
  profiles: number
  /** Requests in flight, spread over the instances. */
  concurrency: number
  modelLatencyMs: number
  /** What happens to Redis halfway: FLUSHALL, or SIGKILL then a restart with nothing in it. */
  disrupt: 'flush' | 'kill'
  /** PostgreSQL behind the fault proxy, every packet held this long each way once the instances are up. */
  databaseDelayMs?: number
  /** First key of the run's profiles, so runs on one Redis and stand-in do not share keys. */
  firstProfile: number
}

/** The cost workload: Zipf(1.1) over `profiles`, 3 instances, Redis lost halfway. */
async function costRun (o: CostRun): Promise<{ apps: Array<{ port: number, child: ChildProcess }>, label: string }> {
  const pgPort = Number(new URL(pg.url).port)
  const proxy = o.databaseDelayMs === undefined ? undefined : await startFaultProxy({ target: { port: pgPort } })
  const apps = await startApps(3, o.prefix, 1, proxy === undefined ? undefined : url => proxy.url(url))
  proxy?.setMode({ kind: 'delay', ms: o.databaseDelayMs ?? 0 })
  openai.reset()
  openai.setLatency(o.modelLatencyMs)
  const sample = zipfSampler(o.profiles, 1.1, 42)
  const sequence = Array.from({ length: o.total }, () => sample())
  const statuses: Record<string, number> = {}
  let next = 0
  let disrupted: Promise<void> | undefined
  let disruptedAt = 0
  const t0 = Date.now()
  await Promise.all(Array.from({ length: o.concurrency }, async (_, w) => {
    while (next < sequence.length) {
      const i = next++
      if (disrupted === undefined && i >= o.total / 2) {
        disruptedAt = Date.now()
        disrupted = o.disrupt === 'flush'
          ? redisClient.flushall().then(() => log(`${o.section}: Redis flushed halfway`))
          // Down for a second, then back empty (no persistence): the apps go direct meanwhile.
          : redis.kill().then(async () => { log(`${o.section}: Redis killed halfway`); await new Promise(resolve => setTimeout(resolve, 1000)); await redis.restart(); log(`${o.section}: Redis restarted empty`) })
        if (o.disrupt === 'flush') await disrupted
      }
      const r = await post(apps[(i + w) % 3].url, body(o.firstProfile + sequence[i])).catch(() => ({ status: 0, json: { cache: { status: 'failed' } } }))
      statuses[r.json.cache.status] = (statuses[r.json.cache.status] ?? 0) + 1
    }
  }))
  await disrupted
  const seconds = (Date.now() - t0) / 1000
  const paid = paidPerPrompt()
  if (paid.calls > paid.prompts) await explainRepaid(apps, t0, disruptedAt)
  const hits = (statuses.hit ?? 0) + (statuses.stale ?? 0) + (statuses.durable ?? 0)
  const fault = `${o.disrupt === 'flush' ? 'Redis flushed' : 'Redis killed (SIGKILL) and restarted empty'} halfway${o.databaseDelayMs === undefined ? '' : `, PostgreSQL slowed by ${2 * o.databaseDelayMs} ms a round trip`}`
  const label = `${o.total} requests, Zipf s=1.1 over ${o.profiles} profiles, 3 instances, ${o.concurrency} in flight, model ${o.modelLatencyMs} ms, ${fault}`
  // The duration goes with the figure, not the measure's name: rows of several --node runs line up.
  record(o.section, label, `${paid.text} (${seconds.toFixed(0)} s)`)
  record(o.section, 'answers by status', Object.entries(statuses).map(([k, v]) => `${k} ${v}`).join(', '))
  record(o.section, 'hit rate (hit + stale + durable)', `${(100 * hits / o.total).toFixed(1)}%`)
  const perCall = (500 * 2.5 + 250 * 10) / 1e6 // the stand-in's usage per call at gpt-4o prices
  record(o.section, 'estimated model cost, with the cache against without (gpt-4o list prices, the stand-in\'s token counts)', `$${(paid.calls * perCall).toFixed(2)} against $${(o.total * perCall).toFixed(2)}: saved $${((o.total - paid.calls) * perCall).toFixed(2)}`)
  await proxy?.close()
  return { apps, label }
}

/** Scenarios 3 and 4: what the model is paid, per distinct prompt (the pay-once targets). */
async function payOnceScenarios (): Promise<void> {
  // 3. Stampede: 1000 concurrent identical misses across 3 instances; then again with
  // Redis flushed while the one build is in flight (its lock is gone with everything else).
  {
    const apps = await startApps(3, 'stampede')
    openai.reset()
    openai.setLatency(modelMs)
    const target = body(30_000)
    const results = await Promise.all(Array.from({ length: 1000 }, async (_, i) => await post(apps[i % 3].url, target)))
    const ok = results.filter(r => r.status === 200).length
    record('3. stampede', '1000 concurrent identical misses over 3 instances', `${openai.calls} model call(s), ${ok}/1000 answered 200, statuses: ${[...new Set(results.map(r => r.json.cache.status))].join(', ')}`)
    openai.reset()
    openai.setLatency(modelMs)
    const flushTarget = body(30_001)
    const answers = Promise.all(Array.from({ length: 1000 }, async (_, i) => await post(apps[i % 3].url, flushTarget)))
    await openai.waitForCalls(1, 30_000)
    await redisClient.flushall()
    const flushed = await answers
    const flushedOk = flushed.filter(r => r.status === 200).length
    record('3. stampede', '1000 concurrent identical misses over 3 instances, FLUSHALL while the build is in flight', `${openai.calls} model call(s), ${flushedOk}/1000 answered 200, statuses: ${[...new Set(flushed.map(r => r.json.cache.status))].join(', ')}`)
    await stopAll(apps)
  }

  // 4. Cost: Zipf(1.1) over 5000 profiles, 3 instances, Redis flush halfway (200 in flight).
  {
    const total = quick ? 3000 : 50_000
    const profiles = quick ? 300 : 5000
    const { apps } = await costRun({ section: '4. cost', prefix: 'cost', total, profiles, concurrency: 200, modelLatencyMs: quick ? 100 : modelMs, disrupt: 'flush', firstProfile: 50_000 })
    if (!onlyPayOnce) {
      for (const [i, a] of apps.entries()) {
        const text = await (await fetch(`http://127.0.0.1:${a.port}/metrics`)).text()
        const rssApp = Number(/process_resident_memory_bytes (\d+)/.exec(text)?.[1])
        record('6. memory', `resident memory of instance ${i + 1} after the cost workload`, `${(rssApp / 1048576).toFixed(0)} MiB`)
      }
      const info = await redisClient.info('memory')
      const used = Number(/used_memory:(\d+)/.exec(info)?.[1])
      const keys = await redisClient.dbsize()
      record('6. memory', 'Redis memory per 10,000 cached narratives', `${(used / keys * 10_000 / 1048576).toFixed(1)} MiB (${keys} keys, ${(used / 1048576).toFixed(1)} MiB used)`)
    }
    await stopAll(apps)
  }
  // 4b and 4c: as an operator measured it (issue 17): 48 in flight, a 150 ms model, 6,000
  // requests over 1,200 profiles (quick: 3,000 over 300), Redis killed and restarted empty,
  // then flushed with PostgreSQL slowed by 200 ms a round trip. Keys of their own.
  const operator = { total: quick ? 3000 : 6000, profiles: quick ? 300 : 1200, concurrency: 48, modelLatencyMs: quick ? 100 : 150 }
  {
    const { apps } = await costRun({ section: '4b. cost, Redis killed', prefix: 'costkill', ...operator, disrupt: 'kill', firstProfile: 60_000 })
    await stopAll(apps)
  }
  {
    const { apps } = await costRun({ section: '4c. cost, PostgreSQL slowed', prefix: 'costslowpg', ...operator, disrupt: 'flush', databaseDelayMs: 100, firstProfile: 70_000 })
    await stopAll(apps)
  }
}

/**
 * 7. A prompt change (v1 to v2), then a model change (gpt-4o to gpt-4o-mini),
 * under the Zipf workload, over 3 instances: latency before, during and after
 * each switch, and the rollout's model calls a minute against ROLLOUT_RATE.
 */
async function rolloutScenario (): Promise<void> {
  const section = '7. prompt rollout'
  const profiles = quick ? 300 : 1000
  const rate = quick ? 600 : 1200
  const concurrency = 48
  const phaseSecs = quick ? 5 : 15
  const first = 80_000
  const dbName = `bench_rollout_node${nodeIndex}`
  execFileSync('psql', [pg.url, '-qc', `CREATE DATABASE ${dbName}`])
  const sample = zipfSampler(profiles, 1.1, 7)
  const token = mintAdminToken('bench-secret-bench-secret-bench-secret-0', 'bench', 3600)
  type Traffic = { ms: number[], statuses: Record<string, number>, versions: Record<string, number>, engines: Record<string, number> }
  /** Zipf traffic for `secs` (or until `until` says stop): latencies, statuses, and the versions and models that wrote the answers. */
  const traffic = async (apps: Array<{ url: string }>, secs: number, until?: () => boolean): Promise<Traffic> => {
    const end = Date.now() + secs * 1000
    const out: Traffic = { ms: [], statuses: {}, versions: {}, engines: {} }
    await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
      for (let n = w; Date.now() < end && !(until?.() ?? false); n += concurrency) {
        const t0 = performance.now()
        const r = await post(apps[n % 3].url, body(first + sample())).catch(() => ({ status: 0, json: { cache: { status: 'failed' }, version: '?' } }))
        out.ms.push(performance.now() - t0)
        out.statuses[r.json.cache.status] = (out.statuses[r.json.cache.status] ?? 0) + 1
        const { version = '?', engine = '?' } = r.json as { version?: string, engine?: string }
        out.versions[version] = (out.versions[version] ?? 0) + 1
        out.engines[engine] = (out.engines[engine] ?? 0) + 1
      }
    }))
    return out
  }
  const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0
  const counts = (c: Record<string, number>): string => Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ')
  const summary = (r: Traffic): string =>
    `${r.ms.length} requests, p50 ${ms(pct(r.ms, 0.5))}, p95 ${ms(pct(r.ms, 0.95))}, p99 ${ms(pct(r.ms, 0.99))}, max ${ms(r.ms.reduce((a, b) => Math.max(a, b), 0))}; ${counts(r.statuses)}; versions ${counts(r.versions)}; models ${counts(r.engines)}`

  /**
   * Stops `from`, starts three instances with `env` at ROLLOUT_RATE `rate`, and
   * runs the workload until the rollout reports done, then for `phaseSecs`.
   */
  const switchTo = async (from: Awaited<ReturnType<typeof startApps>>, what: string, env: Record<string, string>): Promise<Awaited<ReturnType<typeof startApps>>> => {
    // Analytics are written once a second: let the last batch land before the switch.
    await new Promise(resolve => setTimeout(resolve, 1500))
    await stopAll(from)
    // Counted from before the new instances start: their rollout begins as soon as they are up, before the first request.
    openai.reset()
    openai.setLatency(modelMs)
    const switched = Date.now()
    const apps = await startApps(3, 'rollout', 1, undefined, { ROLLOUT_RATE: String(rate), ...env }, dbName)
    let done = false
    let lastStatus: { remaining: number, hotKeys: { sampled: number, onVersion: Record<string, number>, onModel: Record<string, number> }, expectedSecondsToFinish: number } | undefined
    const poll = (async () => {
      while (!done) {
        await new Promise(resolve => setTimeout(resolve, 1000))
        const res = await fetch(`http://127.0.0.1:${apps[0].port}/api/narrative/rollout`, { headers: { authorization: `Bearer ${token}` } }).catch(() => undefined)
        if (res?.ok !== true) continue
        lastStatus = await res.json() as typeof lastStatus
        if (lastStatus !== undefined && lastStatus.remaining === 0 && lastStatus.hotKeys.sampled > 0) done = true
        if (Date.now() - switched > 600_000) done = true
      }
    })()
    const during = await traffic(apps, 3600, () => done)
    await poll
    const tookS = (Date.now() - switched) / 1000
    record(section, `during the ${what} (ROLLOUT_RATE=${rate}/min, until it reported done)`, summary(during))
    const at = openai.requests.map(r => r.at).sort((a, b) => a - b)
    let worstMinute = 0
    let worst10s = 0
    for (let i = 0, j = 0, k = 0; i < at.length; i++) {
      while (at[j] < at[i] - 60_000) j++
      while (at[k] < at[i] - 10_000) k++
      worstMinute = Math.max(worstMinute, i - j + 1)
      worst10s = Math.max(worst10s, i - k + 1)
    }
    const hot = lastStatus?.hotKeys
    record(section, `model calls during the ${what}, against the bound`, `${openai.calls} calls for ${hot?.sampled ?? '?'} hot keys in ${tookS.toFixed(0)} s: ${(openai.calls / tookS * 60).toFixed(0)}/min on average, at most ${worstMinute} in any 60 s and ${worst10s * 6}/min in any 10 s, against ROLLOUT_RATE=${rate}/min (hot keys at the end by version: ${hot === undefined ? '?' : counts(hot.onVersion)}; by model: ${hot === undefined ? '?' : counts(hot.onModel)})`)
    const after = await traffic(apps, phaseSecs)
    record(section, `after the ${what} (${phaseSecs} s)`, summary(after))
    return apps
  }

  // Before: v1 written for every profile, then the workload.
  const v1 = await startApps(3, 'rollout', 1, undefined, { PROMPT_VERSION: 'v1' }, dbName)
  openai.reset()
  openai.setLatency(modelMs)
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < profiles) { const i = next++; await post(v1[i % 3].url, body(first + i)) }
  }))
  const before = await traffic(v1, phaseSecs)
  record(section, `before the switch (v1, ${profiles} profiles written, Zipf s=1.1, ${concurrency} in flight, ${phaseSecs} s)`, summary(before))
  // The prompt change: v2 (the newest); then the model change: the same prompt, another OPENAI_MODEL.
  const v2 = await switchTo(v1, 'prompt rollout (v1 to v2)', {})
  const mini = await switchTo(v2, 'model rollout (gpt-4o to gpt-4o-mini)', { OPENAI_MODEL: 'gpt-4o-mini' })
  await stopAll(mini)
}

/**
 * 8. The OpenAI-compatible endpoint: what the proxy adds to a miss over
 * calling the stand-in directly with the same request and latency (one at a
 * time, and 50 at once), and hits at 50 connections against the bare POST
 * floor measured in the same run.
 */
async function chatScenario (): Promise<void> {
  const section = '8. chat completions'
  openai.reset()
  openai.setLatency(modelMs)
  openai.setStream({ chunks: 10, delayMs: 0 })
  const [app] = await startApps(1, 'chat')
  const token = mintAdminToken('bench-secret-bench-secret-bench-secret-0', 'bench', 3600)
  // The app answers before its database is open and migrated: ask until the key is made.
  let secret = ''
  await waitUntil(async () => {
    const made = await fetch(`http://127.0.0.1:${app.port}/api/keys`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ name: 'bench', rateLimit: 0 }) })
    if (made.status === 201) secret = (await made.json() as { secret: string }).secret
    return secret !== ''
  }, { timeoutMs: 30_000, what: 'an API key for the chat bench' })
  const chatUrl = `http://127.0.0.1:${app.port}/v1/chat/completions`
  const ask = (n: number): { model: string, messages: Array<{ role: string, content: string }> } => ({ model: 'gpt-4o', messages: [{ role: 'user', content: `bench question ${n}` }] })
  /** One request's whole time (ms): through the server (JSON, as an SDK asks), or to the stand-in directly (the streamed request the server makes). */
  const viaServer = async (n: number): Promise<number> => {
    const t0 = performance.now()
    const res = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` }, body: JSON.stringify(ask(n)) })
    await res.text()
    if (res.status !== 200 || res.headers.get('x-cache') !== 'MISS') throw new Error(`expected a miss, got ${res.status} ${res.headers.get('x-cache') ?? ''}`)
    return performance.now() - t0
  }
  const direct = async (n: number): Promise<number> => {
    const t0 = performance.now()
    const res = await fetch(`${openai.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' }, body: JSON.stringify({ ...ask(n), stream: true, stream_options: { include_usage: true } }) })
    await res.text()
    return performance.now() - t0
  }
  const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b)
  const spread = (xs: number[]): string => { const s = sorted(xs); return `p50 ${ms(percentile(s, 50))}, p95 ${ms(percentile(s, 95))}, p99 ${ms(percentile(s, 99))}` }
  const overhead = (through: number[], bare: number[]): string => {
    const a = sorted(through)
    const b = sorted(bare)
    return [50, 95, 99].map(p => `p${p} ${ms(percentile(a, p) - percentile(b, p))}`).join(', ')
  }
  let next = 0
  /** `rounds` rounds of `together` distinct misses at once, through the server and directly, the two taking turns. */
  const misses = async (rounds: number, together: number): Promise<{ through: number[], bare: number[] }> => {
    const through: number[] = []
    const bare: number[] = []
    for (let r = 0; r < rounds; r++) {
      through.push(...await Promise.all(Array.from({ length: together }, async () => await viaServer(next++))))
      bare.push(...await Promise.all(Array.from({ length: together }, async () => await direct(next++))))
    }
    return { through, bare }
  }
  await misses(quick ? 4 : 10, 2) // warm: the first misses compile code and open pool connections
  const alone = await misses(quick ? 20 : 100, 1)
  record(section, `misses one at a time (${alone.through.length}): through the server, whole request`, spread(alone.through))
  record(section, `misses one at a time: the stand-in called directly, same request and ${modelMs} ms latency`, spread(alone.bare))
  record(section, 'misses one at a time: the proxy\'s overhead (server minus direct, by percentile)', overhead(alone.through, alone.bare))
  const fifty = await misses(quick ? 2 : 6, 50)
  record(section, `misses 50 at a time (${fifty.through.length}): through the server, whole request`, spread(fifty.through))
  record(section, '50 at a time: the stand-in called directly', spread(fifty.bare))
  record(section, 'misses 50 at a time: the proxy\'s overhead (server minus direct, by percentile)', overhead(fifty.through, fifty.bare))

  // Hits at 50 connections, against the bare POST floor answering a body of the hit's size.
  const hitBody = ask(-1)
  await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` }, body: JSON.stringify(hitBody) }).then(async r => await r.text())
  await new Promise(resolve => setTimeout(resolve, 200)) // the entry lands in Redis
  const sample = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` }, body: JSON.stringify(hitBody) })
  const size = (await sample.text()).length
  if (sample.headers.get('x-cache') !== 'HIT') throw new Error(`expected a hit, got ${sample.headers.get('x-cache') ?? ''}`)
  const barePort = await freePort()
  const floor = await spawnServer([FLOOR_SCRIPT, String(barePort), 'bare', String(size)], {}, barePort)
  // For reference, in the same rounds: a narrative hit on the same instance (the hit path
  // scenario 1 measures), so that a gap to the floor can be told apart from this run's conditions.
  const narrativeBody = body(1)
  for (let i = 0; i < 2; i++) await fetch(app.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(narrativeBody) }).then(async r => await r.text())
  const targets: LoadTarget[] = [
    { label: 'floor: bare POST (same run, a body of the hit\'s size)', url: `http://127.0.0.1:${barePort}/api/narrative`, pid: floor.pid },
    { label: 'chat completion hit (JSON), one process', url: chatUrl, pid: app.child.pid, headers: { authorization: `Bearer ${secret}` } },
    { label: 'for reference: narrative hit on the same instance', url: app.url, pid: app.child.pid, body: narrativeBody }
  ]
  for (const target of targets) await runLoad({ url: target.url, body: target.body ?? hitBody, headers: target.headers, connections: 50, seconds: quick ? 1 : 2 })
  await compareWithFloor(`${section}, hits at 50 connections`, targets, hitBody, 50, quick ? 3 : 12, 1)
  await stopAll([app, { child: floor }])
}

try {
  if (onlyChat) {
    await redisClient.flushall()
    await chatScenario()
  }
  if (onlyRollout) {
    await redisClient.flushall()
    await rolloutScenario()
  }
  for (const [i, bin] of onlyRollout || onlyChat ? [] : nodes.entries()) {
    nodeIndex = i
    nodeBin = bin
    if (nodes.length > 1) log(`all scenarios on Node ${nodeVersions[i]} (${bin})`)
    await redisClient.flushall()
    if (onlyFleet) {
      await fleetScenario()
      continue
    }
    if (onlyHits || onlyMisses) {
      await speedScenarios()
      continue
    }
    if (!onlyPayOnce) await speedScenarios()
    await payOnceScenarios()
    if (!onlyPayOnce) await fleetScenario()
    if (!onlyPayOnce) await rolloutScenario()
    if (!onlyPayOnce) await chatScenario()
  }
} finally {
  await cleanup()
}

const versions = JSON.parse(await readFile(new URL('../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, { version: string }> }
const v = (name: string): string => versions.packages[`node_modules/${name}`]?.version ?? '?'
const cpu = cpus()[0]?.model ?? 'unknown'
const table = [...rows.values()].map(r => `| ${r.section} | ${r.name} | ${r.values.join(' | ')} |`).join('\n')
const figureColumns = nodes.length > 1 ? nodeVersions.map(v => `Node ${v}`) : ['figure']
const report = `# Benchmark results

- Date: ${new Date().toISOString()}
- Command: \`npm run bench${quick ? ' -- --quick' : ''}\`${quick ? ' (quick: 2 s runs, one pass at 1,000 connections, a 300 ms model, fewer misses, a smaller cost workload)' : ''}
- Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB
- Node ${nodeVersions.join(' and ')}${nodes.length > 1 ? ' (every scenario on each, one after the other, in this run: `--node`)' : ''}; fastify ${v('fastify')}, ioredis ${v('ioredis')}, openai ${v('openai')}, pg ${v('pg')}, autocannon ${v('autocannon')}; Redis ${execFileSync('redis-server', ['--version']).toString().match(/v=([0-9.]+)/)?.[1] ?? '?'}
- The model is the OpenAI stand-in (test/support/fake-openai.ts) answering in ${modelMs} ms. App instances run as separate processes (compiled with the build's options into dist-bench/, then \`node dist-bench/src/server.js\`, as \`npm start\` runs dist/src/server.js; the floors compiled likewise; NODE_ENV=production, LOG_LEVEL=warn, GENERATION_RATE_LIMIT=0) on the same 2-core machine as autocannon, Redis and PostgreSQL.
- Took ${((Date.now() - started) / 1000).toFixed(0)} s.

| scenario | measure | ${figureColumns.join(' | ')} |
| --- | --- | ${figureColumns.map(() => '---').join(' | ')} |
${table}
`
if (onlyPrinted) {
  process.stdout.write(`\n${table}\n\n(--only ${values.only}: bench/RESULTS.md left as it is)\n`)
  process.exit(0)
}
const previous = await readFile(new URL('./RESULTS.md', import.meta.url), 'utf8').catch(() => '')
if (onlyFleet) {
  // The fleet's own section, before the kept notes; the rest of the file as it was.
  const START = '<!-- fleet: npm run bench -- --only fleet -->'
  const END = '<!-- /fleet -->'
  const section = `${START}\n## Fleet (\`npm run bench -- --only fleet\`, ${new Date().toISOString()})\n\nThree app instances (compiled, as in the other scenarios) behind Debian's nginx with ops/nginx/narrative-proxy.conf, against one instance behind the same configuration; everything on this ${cpus().length}-core machine (autocannon, nginx, the instances, Redis, PostgreSQL).\n\n| scenario | measure | figure |\n| --- | --- | --- |\n${table}\n${END}\n`
  const marker = '<!-- kept across runs: notes and earlier figures -->'
  let next: string
  if (previous.includes(START) && previous.includes(END)) next = previous.slice(0, previous.indexOf(START)) + section + previous.slice(previous.indexOf(END) + END.length + 1)
  else if (previous.includes(marker)) next = previous.slice(0, previous.indexOf(marker)) + section + '\n' + previous.slice(previous.indexOf(marker))
  else next = previous + '\n' + section
  await writeFile(new URL('./RESULTS.md', import.meta.url), next)
  process.stdout.write(`\n${table}\n\nwrote the fleet section of bench/RESULTS.md\n`)
  process.exit(0)
}
if (onlyRollout) {
  // Its own block, replaced by the next --only rollout run; the rest of the file is left as it is.
  const OPEN = '<!-- rollout: npm run bench -- --only rollout -->'
  const CLOSE = '<!-- /rollout -->'
  const block = `${OPEN}\n## Prompt rollout (\`npm run bench -- --only rollout${quick ? ' --quick' : ''}\`, ${new Date().toISOString()}, model ${modelMs} ms)\n\n| scenario | measure | figure |\n| --- | --- | --- |\n${table}\n${CLOSE}`
  const kept = previous.includes(OPEN) ? previous.slice(0, previous.indexOf(OPEN)) + block + previous.slice(previous.indexOf(CLOSE) + CLOSE.length) : `${previous.trimEnd()}\n\n${block}\n`
  await writeFile(new URL('./RESULTS.md', import.meta.url), kept)
  process.stdout.write(`\n${table}\n\nwrote the rollout block of bench/RESULTS.md\n`)
  process.exit(0)
}
if (onlyChat) {
  // Its own block, replaced by the next --only chat run; the rest of the file is left as it is.
  const OPEN = '<!-- chat: npm run bench -- --only chat -->'
  const CLOSE = '<!-- /chat -->'
  const block = `${OPEN}\n## Chat completions (\`npm run bench -- --only chat${quick ? ' --quick' : ''}\`, ${new Date().toISOString()}, stand-in latency ${modelMs} ms)\n\nOne app instance (compiled, NODE_ENV=production) with the OpenAI stand-in as its upstream, autocannon and the floor on this ${cpus().length}-core machine. A miss's overhead is the whole request through the server minus the same request sent to the stand-in directly, percentile by percentile, the two taking turns; hits are JSON answers to an SDK-shaped request with an API key.\n\n| scenario | measure | figure |\n| --- | --- | --- |\n${table}\n${CLOSE}`
  const kept = previous.includes(OPEN) ? previous.slice(0, previous.indexOf(OPEN)) + block + previous.slice(previous.indexOf(CLOSE) + CLOSE.length) : `${previous.trimEnd()}\n\n${block}\n`
  await writeFile(new URL('./RESULTS.md', import.meta.url), kept)
  process.stdout.write(`\n${table}\n\nwrote the chat block of bench/RESULTS.md\n`)
  process.exit(0)
}
// What follows this marker (hand-written notes, earlier runs) is kept when the figures are rewritten.
const KEPT = '<!-- kept across runs: notes and earlier figures -->'
const history = previous.includes(KEPT) ? previous.slice(previous.indexOf(KEPT)) : ''
await writeFile(new URL('./RESULTS.md', import.meta.url), report + (history === '' ? '' : `\n${history}`))
process.stdout.write(`\n${table}\n\nwrote bench/RESULTS.md\n`)
