// Build locks under failure: a holder killed or paused past its TTL (real
// server processes), each lock's TTL following its own deadline (a dead
// holder blocks its keys no longer than that), and a model-based test of acquire / release / expiry
// against the real RedisStore and the in-process MemoryStore.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { build, exampleBody, stack, type Stack } from '../helper.ts'
import { RedisStore } from '../../src/swr/redis-store.ts'
import { MemoryStore } from '../../src/swr/memory-store.ts'
import type { CacheStore } from '../../src/swr/store.ts'
import { versionOf } from '../../src/swr/store.ts'
import { decodeEntry } from '../../src/narrative/codec.ts'
import { ENGINE_VERSION } from '../../src/domain/prompt.ts'
import { lockKey, refreshLockKey } from '../../src/swr/keys.ts'
import { freePort } from '../support/ports.ts'
import { uniqueDatabaseUrl, uniquePrefix } from '../support/env.ts'
import { sleep, waitUntil } from '../support/wait.ts'
import { postNarrative, redisClient } from './helpers.ts'

/** A real server process (`node --import tsx src/server.ts`) on the test's Redis and fake model. */
async function serverProcess (t: Test, s: Stack, env: Record<string, string> = {}): Promise<{ child: ChildProcess, url: string }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, ...s.env, DATABASE_URL: await uniqueDatabaseUrl(t), PORT: String(port), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'ignore']
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await once(child, 'exit')
  })
  const url = `http://127.0.0.1:${port}`
  await waitUntil(async () => (await fetch(`${url}/ready`)).ok, { timeoutMs: 30_000, what: 'the server process' })
  return { child, url }
}

const postTo = (url: string, body: unknown): Promise<Response> =>
  fetch(`${url}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

t.test('a holder killed (SIGKILL) while it holds a build lock: waiters answer, and another instance builds once the lock expires', async t => {
  const s = await stack(t)
  // OPENAI_TIMEOUT_MS 1000 in the holder: its build lock's TTL is 1000 + 5000 = 6 s.
  const holder = await serverProcess(t, s, { OPENAI_TIMEOUT_MS: '1000' })
  const redis = redisClient(t, s.redisUrl)
  // The other instances wait longer than that TTL (6 s deadline + 2 s), so they see the expiry.
  const apps = [await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '6000' } }), await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '6000' } })]
  const key = apps[0].narratives.keyOf(exampleBody as never).key
  s.openai.setLatency(5000)
  const dying = postTo(holder.url, exampleBody).catch(err => err as Error)
  await s.openai.waitForCalls(1)
  s.openai.setLatency(20)
  const ttl = await redis.pttl(lockKey(key))
  t.ok(ttl > 4000 && ttl <= 6000, `the holder took the lock (${ttl} ms left)`)
  holder.child.kill('SIGKILL')
  await once(holder.child, 'exit')
  t.type(await dying, Error, 'the holder died with its request')
  const killedAt = Date.now()

  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => postNarrative(apps[i % 2], exampleBody)))
  t.same(answers.map(a => a.code), Array(10).fill(200), 'every waiter answered 200')
  t.ok(answers.every(a => a.status === 'miss'), `built after the expiry and shared (${[...new Set(answers.map(a => a.status))].join(', ')})`)
  const waited = Math.max(...answers.map(a => a.at + a.ms)) - killedAt
  t.ok(waited >= ttl - 700 && waited < ttl + 2000, `built once the dead holder's lock expired (${waited} ms after the kill, TTL left was ${ttl} ms)`)
  t.equal(s.openai.calls, 2, 'one call by the dead holder, exactly one by the instances after it')
  t.equal(await redis.exists(lockKey(key)), 0, 'the new builder released its lock')
  t.equal((await postNarrative(apps[0], exampleBody)).status, 'hit')
})

t.test('a holder paused (SIGSTOP) past its lock TTL: another instance builds; resumed, the old holder neither frees the new lock nor overwrites the newer value', async t => {
  const s = await stack(t)
  let call = 0
  s.openai.setReply(() => ({ summary: ++call === 1 ? 'written by the paused holder' : 'written by the later builder', bullets: [`call ${call}`] }))
  const holder = await serverProcess(t, s, { OPENAI_TIMEOUT_MS: '1000' })
  const redis = redisClient(t, s.redisUrl)
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '6000' } })
  const key = app.narratives.keyOf(exampleBody as never).key
  s.openai.setLatency(300)
  const paused = postTo(holder.url, exampleBody).then(async res => ({ status: res.status, body: await res.json() as { cache: { status: string } } }), err => err as Error)
  await s.openai.waitForCalls(1)
  holder.child.kill('SIGSTOP') // the model answers while the holder sleeps
  const oldToken = await redis.get(lockKey(key))
  t.ok(oldToken, 'the paused process holds the lock')

  s.openai.setLatency(1500) // the later builder holds its lock long enough to resume the old one meanwhile
  const later = postNarrative(app, exampleBody)
  await s.openai.waitForCalls(2, 10_000)
  const newToken = await redis.get(lockKey(key))
  t.ok(newToken !== null && newToken !== oldToken, 'the later builder took the expired lock')
  holder.child.kill('SIGCONT')
  await sleep(700) // the old holder wakes up, finishes or gives up, and releases "its" lock
  t.equal(await redis.get(lockKey(key)), newToken, 'the resumed holder did not free the later builder\'s lock')
  const built = await later
  t.equal(built.status, 'miss')
  t.match(JSON.parse(built.body).narrative.summary, 'written by the later builder')
  const old = await paused
  t.not(old instanceof Error ? 500 : old.status, 500, 'the resumed holder still answered its own client without a 5xx')

  await sleep(300)
  const stored = await redis.getBuffer(key)
  t.ok(stored !== null, 'the value is stored')
  const entry = decodeEntry(stored!, ENGINE_VERSION)
  t.equal(entry.narrative.summary, 'written by the later builder', 'the newer value was not overwritten by the late holder')
  t.ok(versionOf(stored!) > Date.now() - 10_000, 'with the later build\'s version')
  t.equal(await redis.exists(lockKey(key)), 0, 'no lock left')
  t.equal(s.openai.calls, 2)
  t.ok((await fetch(`${holder.url}/health`)).ok, 'the resumed process serves on')
})

t.test('each lock lives its own deadline plus the margin: a request build\'s lock the generation deadline, a refresh\'s the refresh deadline (PTTL while each is in flight)', async t => {
  const s = await stack(t)
  const redis = redisClient(t, s.redisUrl)
  let offset = 0
  const clock = (): number => Date.now() + offset
  // OPENAI_TIMEOUT_MS 1000: a request build has 1 s, a background refresh 2 s; the margin is 5 s.
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '1000' }, cache: { clock } })
  const key = app.narratives.keyOf(exampleBody as never).key
  s.openai.setLatency(400)
  const built = postNarrative(app, exampleBody)
  await s.openai.waitForCalls(1)
  const buildTtl = await redis.pttl(lockKey(key))
  t.ok(buildTtl > 5000 && buildTtl <= 6000, `a request build's lock: 1 s + 5 s, not the refresh's 2 s + 5 s (${buildTtl} ms left)`)
  t.equal((await built).status, 'miss')

  offset = 8 * 86_400_000 // stale (CACHE_STALE_DAYS 7): the next answer starts a refresh
  t.equal((await postNarrative(app, exampleBody)).status, 'stale')
  await s.openai.waitForCalls(2)
  const refreshTtl = await redis.pttl(refreshLockKey(key))
  t.ok(refreshTtl > 6000 && refreshTtl <= 7000, `a refresh's lock: 2 s + 5 s (${refreshTtl} ms left)`)
  await waitUntil(() => app.engine.counters.refreshSucceeded === 1, { what: 'the refresh' })
  t.equal(await redis.exists(lockKey(key), refreshLockKey(key)), 0, 'both released once done')
})

// ---------------------------------------------------------------------------
// Model-based: acquire, release and expiry against the real stores.

interface LockModel {
  /** The token the model believes holds the lock, and when it expires: between low and high (store clock). */
  holder: { token: string, low: number, high: number } | null
  /** Every token that ever held the lock, newest last. */
  past: string[]
}

interface Real {
  store: CacheStore
  key: string
  now: () => number
  /** Lets time pass: a real sleep for Redis, the fake clock for MemoryStore. */
  wait: (ms: number) => Promise<void>
  /** Slack (ms) around an expiry where either outcome is accepted: scheduling jitter on a real clock. */
  slack: number
}

type Validity = 'valid' | 'expired' | 'unsure'

function validity (m: LockModel, from: number, to: number, slack: number): Validity {
  if (m.holder === null) return 'expired'
  if (to + slack < m.holder.low) return 'valid'
  if (from - slack >= m.holder.high) return 'expired'
  return 'unsure'
}

class Acquire implements fc.AsyncCommand<LockModel, Real> {
  readonly contenders: number
  readonly ttl: number

  constructor (contenders: number, ttl: number) {
    this.contenders = contenders
    this.ttl = ttl
  }

  check (): boolean { return true }
  async run (m: LockModel, r: Real): Promise<void> {
    const tokens = Array.from({ length: this.contenders }, () => randomUUID())
    const from = r.now()
    const results = await Promise.all(tokens.map(token => r.store.acquireLock(r.key, token, this.ttl)))
    const to = r.now()
    const winners = tokens.filter((_, i) => results[i])
    const v = validity(m, from, to, r.slack)
    if (winners.length > 1) throw new Error(`two valid holders: ${winners.length} concurrent acquires succeeded`)
    if (v === 'valid' && winners.length > 0) throw new Error(`acquired while ${m.holder?.token} still held the lock`)
    if (v === 'expired' && winners.length === 0) throw new Error('a free lock could not be acquired')
    if (winners.length === 1) {
      m.holder = { token: winners[0], low: from + this.ttl, high: to + this.ttl }
      m.past.push(winners[0])
    } else if (v === 'unsure') {
      // It had expired for nobody else either: a failed attempt means it is still held.
      if (m.holder !== null) m.holder = { ...m.holder, low: Math.max(m.holder.low, from) }
    }
  }

  toString (): string { return `acquire(x${this.contenders}, ${this.ttl} ms)` }
}

class Release implements fc.AsyncCommand<LockModel, Real> {
  readonly which: 'own' | 'stale' | 'foreign'

  constructor (which: 'own' | 'stale' | 'foreign') {
    this.which = which
  }

  check (m: LockModel): boolean { return this.which !== 'stale' || m.past.length > 1 }
  async run (m: LockModel, r: Real): Promise<void> {
    const token = this.which === 'own' ? (m.holder?.token ?? randomUUID()) : this.which === 'stale' ? m.past[0] : randomUUID()
    const from = r.now()
    const released = await r.store.releaseLock(r.key, token)
    const to = r.now()
    const v = validity(m, from, to, r.slack)
    const mine = m.holder !== null && token === m.holder.token
    if (!mine) {
      if (released) throw new Error(`a release with a ${this.which} token freed the lock`)
      if (v === 'valid') {
        const held = await r.store.get(r.key)
        if (held?.toString() !== m.holder?.token) throw new Error(`after a ${this.which} release the lock reads ${String(held)}, not the holder's token`)
      }
      return
    }
    if (v === 'valid' && !released) throw new Error('the holder could not release its own valid lock')
    if (v === 'expired' && released) throw new Error('an expired lock was "released"')
    m.holder = null
  }

  toString (): string { return `release(${this.which})` }
}

class Wait implements fc.AsyncCommand<LockModel, Real> {
  readonly ms: number

  constructor (ms: number) {
    this.ms = ms
  }

  check (): boolean { return true }
  async run (_m: LockModel, r: Real): Promise<void> { await r.wait(this.ms) }
  toString (): string { return `wait(${this.ms})` }
}

class Read implements fc.AsyncCommand<LockModel, Real> {
  check (): boolean { return true }
  async run (m: LockModel, r: Real): Promise<void> {
    const from = r.now()
    const held = (await r.store.get(r.key))?.toString() ?? null
    const to = r.now()
    const v = validity(m, from, to, r.slack)
    if (held !== null && held !== m.holder?.token) throw new Error(`the lock holds ${held}, which is not the one valid holder`)
    if (v === 'valid' && held === null) throw new Error('a valid lock vanished')
    if (v === 'expired' && held !== null) throw new Error(`an expired lock is still there (${held})`)
    if (held === null && v !== 'valid') m.holder = null
  }

  toString (): string { return 'read' }
}

function lockCommands (ttls: number[], waits: number[]): Array<fc.Arbitrary<fc.AsyncCommand<LockModel, Real>>> {
  return [
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.constantFrom(...ttls)).map(([n, ttl]) => new Acquire(n, ttl)),
    fc.constantFrom('own' as const, 'stale' as const, 'foreign' as const).map(w => new Release(w)),
    fc.constantFrom(...waits).map(ms => new Wait(ms)),
    fc.constant(new Read())
  ]
}

t.test('model: RedisStore locks (real Redis, short TTLs): never two valid holders, a wrong-token release never frees, expiry frees', async t => {
  const s = await stack(t)
  const client = new Redis(s.redisUrl, { maxRetriesPerRequest: 1 })
  const store = new RedisStore(client)
  t.teardown(async () => { await store.close(); client.disconnect() })
  let run = 0
  const started = Date.now()
  await fc.assert(
    fc.asyncProperty(fc.commands(lockCommands([30, 60, 120], [0, 10, 40, 80, 130]), { maxCommands: 25 }), async cmds => {
      const key = `lock:${s.prefix}:model:${run++}`
      const real: Real = { store, key, now: () => Date.now(), wait: ms => sleep(ms), slack: 8 }
      await fc.asyncModelRun(() => ({ model: { holder: null, past: [] }, real }), cmds)
      await client.del(key)
    }),
    { numRuns: 150, interruptAfterTimeLimit: 12_000 }
  )
  t.comment(`${run} runs in ${Date.now() - started} ms`)
  t.ok(run >= 10, 'enough runs')
})

t.test('model: MemoryStore locks (fake clock, exact expiry): the same properties', async t => {
  let now = 1_700_000_000_000
  let run = 0
  await fc.assert(
    fc.asyncProperty(fc.commands(lockCommands([1, 30, 60, 120], [0, 1, 29, 30, 31, 60, 200]), { maxCommands: 40 }), async cmds => {
      const store = new MemoryStore({ maxBytes: 1_000_000, clock: () => now })
      const real: Real = { store, key: `lock:${uniquePrefix('mem')}:${run++}`, now: () => now, wait: async ms => { now += ms }, slack: 0 }
      await fc.asyncModelRun(() => ({ model: { holder: null, past: [] }, real }), cmds)
    }),
    { numRuns: 300 }
  )
  t.ok(run >= 300)
})
