// The fleet under load, on real servers from Debian's packages: three server
// processes behind nginx (ops/nginx/narrative-proxy.conf), Redis with a
// replica and three Sentinels, PostgreSQL, the fake OpenAI (in a process of
// its own, see test/support/fake-openai-process.ts). 1,000 concurrent
// clients (hits, misses, streams) for FLEET_SECONDS (default 24 s) while one
// instance is SIGKILLed and started again, and Redis fails over (SENTINEL
// FAILOVER, then the old master killed).
//
// Asserts: every request answered (nginx retries on a dead upstream; a stream
// cut by a dying instance ends with an error event or a closed stream, never
// hangs), at most one model call per distinct prompt (each instance names
// itself in its OPENAI_BASE_URL, so every call is known by its caller: the
// SIGKILLed process's call is the only one a prompt may be called again after),
// and reports p95 of hits.
// Run with `npm run test:fleet` (not part of `npm test`).
import t from 'tap'
import { startFakeOpenAIProcess } from '../support/fake-openai-process.ts'
import { startSentinelSet } from '../support/redis-sentinel.ts'
import { startFleet } from '../support/fleet.ts'
import { uniqueDatabaseUrl, uniquePrefix } from '../support/env.ts'
import { percentile } from '../../bench/load.ts'
import { bodyFor, exampleBody } from '../helper.ts'

const CLIENTS = Number(process.env.FLEET_CLIENTS ?? 1000)
const SECONDS = Number(process.env.FLEET_SECONDS ?? 24)
/** A request with no answer after this long is a hang. */
const HANG_MS = 30_000

type Kind = 'hit' | 'miss' | 'stream'
interface Outcome { kind: Kind, ok: boolean, ms: number, status: number, cache: string | null, detail?: string, streamEnd?: 'done' | 'error' | 'closed' }

t.test(`fleet: ${CLIENTS} clients for ${SECONDS} s over three instances behind nginx, an instance killed and Redis failed over`, { timeout: (SECONDS + 240) * 1000 }, async t => {
  const set = await startSentinelSet({ password: 'fleet-test-pw' })
  t.teardown(() => set.stop())
  const openai = await startFakeOpenAIProcess({ latencyMs: 300, streamChunks: 4, streamDelayMs: 20 })
  t.teardown(() => openai.close())
  const databaseUrl = await uniqueDatabaseUrl(t)
  const env = {
    ...set.env,
    DATABASE_URL: databaseUrl,
    CACHE_PREFIX: uniquePrefix('fleet'),
    OPENAI_API_KEY: 'sk-test-not-a-real-key',
    OPENAI_TIMEOUT_MS: '10000',
    // One client address (nginx on loopback) for every simulated user: no per-address limit.
    GENERATION_RATE_LIMIT: '0',
    TRUST_PROXY: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LOCAL_CACHE_MAX_ENTRIES: '10000'
  }
  // Each instance names itself to the model: i0, i1, i2 (i1 is the one killed; restarted, it is i1-restarted).
  const modelUrl = (caller: string): string => `${openai.origin}/${caller}/v1`
  const fleet = await startFleet(3, env, i => ({ OPENAI_BASE_URL: modelUrl(`i${i}`) }))
  const KILLED = 'i1'
  t.teardown(() => fleet.stop())
  const url = `${fleet.balancer.url}/api/narrative`

  // The hit set: 50 keys, built before the load.
  const HOT = 50
  for (let n = 0; n < HOT; n++) {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bodyFor(n)) })
    t.equal(res.status, 200, `warm ${n}`)
    await res.arrayBuffer()
  }

  // Misses: each client asks for new keys; a key is asked by ~4 clients at once (a little stampede).
  let nextMiss = 10_000
  const missBody = (): unknown => {
    const n = Math.floor(nextMiss++ / 4)
    return { ...exampleBody, profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 31 + (n % 30), Sirius: 1 + (Math.floor(n / 30) % 29), Pleiades: 1 + (Math.floor(n / 870) % 10) } }, userId: `m-${n}` }
  }

  const outcomes: Outcome[] = []
  const started = Date.now()
  const deadline = started + SECONDS * 1000
  let inFlight = 0

  const one = async (kind: Kind): Promise<Outcome> => {
    const body = kind === 'hit' ? bodyFor(Math.floor(Math.random() * HOT)) : kind === 'miss' ? missBody() : (Math.random() < 0.5 ? bodyFor(Math.floor(Math.random() * HOT)) : missBody())
    const t0 = performance.now()
    const signal = AbortSignal.timeout(HANG_MS)
    inFlight++
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(kind === 'stream' ? { accept: 'text/event-stream' } : {}) },
        body: JSON.stringify(body),
        signal
      })
      if (kind !== 'stream') {
        await res.arrayBuffer()
        return { kind, ok: res.status === 200, ms: performance.now() - t0, status: res.status, cache: res.headers.get('x-cache') }
      }
      // A stream: read to its end. done or error is an end; so is a stream closed midway (its instance died).
      let text = ''
      let end: Outcome['streamEnd'] = 'closed'
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          text += Buffer.from(chunk).toString()
          if (/event: done\n/.test(text)) end = 'done'
          else if (/event: error\n/.test(text)) end = 'error'
        }
      } catch (err) {
        if (signal.aborted) throw err
        end = 'closed'
      }
      return { kind, ok: res.status === 200, ms: performance.now() - t0, status: res.status, cache: res.headers.get('x-cache'), streamEnd: end }
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      return { kind, ok: false, ms: performance.now() - t0, status: 0, cache: null, detail: signal.aborted ? 'hang' : (e.cause?.code ?? e.message) }
    } finally {
      inFlight--
    }
  }

  const client = async (): Promise<void> => {
    // At least SECONDS, and on until the faults are over and 2 s more: every fault happens under load.
    while (Date.now() < Math.max(deadline, faultsOverAt + 2000)) {
      const r = Math.random()
      outcomes.push(await one(r < 0.7 ? 'hit' : r < 0.9 ? 'miss' : 'stream'))
    }
  }

  // The faults, while the clients run.
  const events: string[] = []
  const note = (what: string): void => { events.push(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`) }
  // Each on its own clock, so a slow restart (a process starting on a saturated
  // machine takes seconds) never pushes the failover past the end of the load.
  const killAndRestart = (async () => {
    await new Promise(resolve => setTimeout(resolve, SECONDS * 200))
    const victim = fleet.instances[1]
    note(`SIGKILL instance on ${victim.port} (${inFlight} requests in flight)`)
    await victim.kill()
    await new Promise(resolve => setTimeout(resolve, 2000))
    note('starting it again')
    await victim.start({ OPENAI_BASE_URL: modelUrl(`${KILLED}-restarted`) })
    note('it is ready')
  })()
  const failover = (async () => {
    await new Promise(resolve => setTimeout(resolve, SECONDS * 500))
    const oldMaster = await set.masterPort()
    note(`SENTINEL FAILOVER (master ${oldMaster})`)
    const newMaster = await set.failover()
    note(`promoted ${newMaster}; killing the old master`)
    await set.nodes.find(n => n.port === oldMaster)?.kill()
    note('old master killed')
  })()
  let faultsOverAt = Infinity
  const faults = Promise.all([killAndRestart, failover]).finally(() => { faultsOverAt = Date.now() })

  await Promise.all([...Array.from({ length: CLIENTS }, client), faults])
  const elapsed = (Date.now() - started) / 1000
  for (const e of events) t.comment(e)

  const byKind = (k: Kind): Outcome[] => outcomes.filter(o => o.kind === k)
  const lost = outcomes.filter(o => !o.ok)
  const hangs = outcomes.filter(o => o.detail === 'hang')
  const hits = outcomes.filter(o => o.ok && o.kind !== 'stream' && o.cache === 'HIT').map(o => o.ms).sort((a, b) => a - b)
  const all = outcomes.filter(o => o.ok).map(o => o.ms).sort((a, b) => a - b)
  const streams = byKind('stream')
  const streamEnds = { done: streams.filter(o => o.streamEnd === 'done').length, error: streams.filter(o => o.streamEnd === 'error').length, closed: streams.filter(o => o.streamEnd === 'closed').length }
  // A call made by the SIGKILLed process may have been answered, and even read,
  // but its caller died before storing it: the key is built again once the
  // dead builder's lock and claim expire (docs/reliability.md, a lock holder
  // killed). Every other call counts, whether its caller read the answer to
  // the end or gave up on it (a call given up is paid all the same): at most
  // one per prompt. Calls are told apart by their caller, not by whether the
  // connection was closed early: a process killed after reading the answer
  // closed nothing early, and a call given up at its deadline was not killed.
  const report = await openai.report()
  const calls = new Map<string, Array<{ at: number, caller: string | undefined, abandoned: boolean }>>()
  for (const r of report.requests) calls.set(r.prompt, [...(calls.get(r.prompt) ?? []), r])
  const twice = [...calls.values()].filter(c => c.length > 1)
  const paidTwice = [...calls.values()].filter(c => c.filter(x => x.caller !== KILLED).length > 1).length
  const killedTwice = [...calls.values()].filter(c => c.filter(x => x.caller === KILLED).length > 1).length
  for (const c of twice) t.comment(`a prompt called ${c.length} times: ${c.map(x => `${((x.at - started) / 1000).toFixed(1)} s by ${x.caller ?? '?'}${x.abandoned ? ' (closed early)' : ''}`).join(', ')}`)
  const fmt = (x: number): string => x.toFixed(1)
  t.comment(`requests ${outcomes.length} in ${fmt(elapsed)} s (${Math.round(outcomes.length / elapsed)}/s): hit-kind ${byKind('hit').length}, miss-kind ${byKind('miss').length}, streams ${streams.length} (ends: ${JSON.stringify(streamEnds)})`)
  t.comment(`hits (X-Cache HIT) ${hits.length}: p50 ${fmt(percentile(hits, 50))} ms, p95 ${fmt(percentile(hits, 95))} ms, p99 ${fmt(percentile(hits, 99))} ms; all answers p95 ${fmt(percentile(all, 95))} ms`)
  t.comment(`model calls ${report.calls} for ${calls.size} distinct prompts; called twice: ${twice.length} (after the killed instance's call: ${twice.length - paidTwice}), paid twice by instances that lived: ${paidTwice}; calls closed early by their caller: ${report.abandoned}`)
  if (lost.length > 0) t.comment(`not answered: ${JSON.stringify(lost.slice(0, 10))}`)

  t.ok(outcomes.length > CLIENTS, 'the clients ran')
  t.equal(hangs.length, 0, 'no request hung')
  t.equal(lost.length, 0, `every request answered 200 (${lost.length} were not)`)
  t.ok(streams.every(o => o.streamEnd !== undefined), 'every stream ended: done, an error event, or closed')
  t.ok(report.requests.every(r => r.caller !== undefined), 'every model call names its caller')
  t.equal(paidTwice, 0, 'at most one model call per distinct prompt by the instances that lived (a second call only after the killed instance\'s)')
  t.equal(killedTwice, 0, 'and at most one by the killed instance')
  t.ok(hits.length > 0, `p95 of hits under load: ${fmt(percentile(hits, 95))} ms`)
  for (const i of fleet.instances) t.ok(i.alive, `instance on ${i.port} is up at the end`)
})
