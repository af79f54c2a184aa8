// The generic engine on its own, with a value that is not a narrative (a
// price quote): no Fastify, no narrator. A fake clock and the in-process store
// where behaviour allows; the real Redis for locks and pub/sub.
import t from 'tap'
import { Redis } from 'ioredis'
import { SwrEngine, type EngineOptions } from '../src/swr/engine.ts'
import { CircuitBreaker } from '../src/swr/breaker.ts'
import { openJson, sealJson, CacheCorruptionError, type EntryCodec } from '../src/swr/codec.ts'
import { LocalTier } from '../src/swr/local-tier.ts'
import { silentLogger } from '../src/swr/logger.ts'
import { MemoryStore } from '../src/swr/memory-store.ts'
import { RedisStore } from '../src/swr/redis-store.ts'
import { failedBuildKey, lockKey } from '../src/swr/keys.ts'
import type { CacheStore } from '../src/swr/store.ts'
import { BuildFailedError, BuildRefusedError, type BuildSpec, type Entry } from '../src/swr/types.ts'
import { BuildClaims, type BuildClaimStore } from '../src/swr/build-claims.ts'
import { DurableTier, type DurableRepository } from '../src/swr/durable-tier.ts'
import { BuildClaimsRepository } from '../src/db/build-claims-repository.ts'
import { openPostgres } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { sharedRedisUrl, uniqueDatabaseUrl, uniquePrefix, type Teardownable } from './support/env.ts'
import { sleep, waitUntil } from './support/wait.ts'

/** The value these tests cache: nothing like a narrative. */
interface Quote { symbol: string, cents: number }

const quoteCodec: EntryCodec<Quote> = {
  encode: (entry, version) => sealJson(Buffer.from(JSON.stringify(entry)), version, false),
  decode: stored => {
    const json = openJson(stored, 4096) as Entry<Quote>
    if (typeof json?.value?.symbol !== 'string') throw new CacheCorruptionError('not a quote')
    return json
  }
}

/** A build that counts its calls, takes `ms` (real time) and may fail. */
function quotes (options: { ms?: number, fail?: boolean, cents?: number } = {}) {
  const counter = { builds: 0, refreshes: 0 }
  const spec = (symbol: string, extra: Partial<BuildSpec<Quote>> = {}): BuildSpec<Quote> => ({
    build: async ({ reason }) => {
      if (reason === 'refresh') counter.refreshes++
      else counter.builds++
      if (options.ms !== undefined) await sleep(options.ms)
      if (options.fail === true) throw new Error('the quote service is down')
      return { symbol, cents: (options.cents ?? 100) + counter.builds + counter.refreshes }
    },
    fallback: () => ({ symbol, cents: -1 }),
    ...extra
  })
  return { counter, spec }
}

const options = (prefix: string, more: Partial<EngineOptions> = {}): EngineOptions => ({
  prefix, ttlSeconds: 3600, staleSeconds: 60, buildDeadlineMs: 2000, refreshDeadlineMs: 2000, maxWaitMs: 5000, pollMinMs: 20, pollMaxMs: 100, ...more
})

/** The store, with each lock request made to wait for `before()` first (a race held open on purpose). */
function holdingLockRequests (store: CacheStore, before: () => Promise<void>): CacheStore {
  return new Proxy(store, {
    get (target, name, receiver) {
      const real = Reflect.get(target, name, receiver)
      if (typeof real !== 'function') return real
      if (name !== 'acquireLock') return real.bind(target)
      return async (...args: unknown[]) => { await before(); return await real.apply(target, args) }
    }
  })
}

function fakeClock (start = 1_700_000_000_000) {
  let now = start
  return { now: () => now, advance: (ms: number) => { now += ms } }
}

async function redisEngines (t: Teardownable, count: number, more: Partial<EngineOptions> = {}) {
  const url = await sharedRedisUrl(t)
  const prefix = uniquePrefix('swr')
  const engines: Array<SwrEngine<Quote>> = []
  for (let i = 0; i < count; i++) {
    const client = new Redis(url)
    const store = new RedisStore(client)
    const engine = new SwrEngine<Quote>({ store, breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, options: options(prefix, more) })
    await engine.start()
    t.teardown(async () => { await engine.close(); await store.close(); client.disconnect() })
    engines.push(engine)
  }
  return { engines, prefix, admin: (() => { const c = new Redis(url); t.teardown(() => c.disconnect()); return c })() }
}

t.test('stampede: 40 concurrent calls on two instances (real Redis) build once; the rest are coalesced', async t => {
  const { engines, prefix } = await redisEngines(t, 2)
  const { counter, spec } = quotes({ ms: 200 })
  const key = `${prefix}:quote:ACME`
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => engines[i % 2].getOrBuild(key, spec('ACME'))))
  t.equal(counter.builds, 1, 'one build across both instances')
  t.equal(answers.filter(a => a.status === 'miss').length, 1, 'one call built it')
  t.ok(answers.every(a => a.status === 'miss' || a.status === 'coalesced'), 'every other call waited for that build')
  t.ok(answers.every(a => a.value.cents === answers[0].value.cents), 'and all got its value')
  t.equal(answers.filter(a => a.built).length, 1)
  t.equal(engines[0].counters.coalesced + engines[1].counters.coalesced, 39)
  await Promise.all(engines.map(e => e.idle()))
  const again = await engines[1].getOrBuild(key, spec('ACME'))
  t.equal(again.status, 'hit')
})

t.test('onWait: called once when a call starts waiting for a build whose lock is held elsewhere, never for the builder', async t => {
  const { engines, prefix } = await redisEngines(t, 2)
  const { counter, spec } = quotes({ ms: 200 })
  const key = `${prefix}:quote:WAIT`
  const waits = [0, 0]
  const building = engines[0].getOrBuild(key, spec('WAIT', { onWait: () => { waits[0]++ } }))
  await sleep(50)
  const waiting = engines[1].getOrBuild(key, spec('WAIT', { onWait: () => { waits[1]++ } }))
  const [a, b] = await Promise.all([building, waiting])
  t.same([a.status, b.status], ['miss', 'coalesced'])
  t.same(waits, [0, 1], 'the waiter was told, once; the builder never')
  t.equal(counter.builds, 1)
})

t.test('stale-while-revalidate (fake clock, in-process store): a stale entry is answered at once and refreshed once', async t => {
  const clock = fakeClock()
  const store = new MemoryStore({ maxBytes: 1 << 20, clock: clock.now })
  const engine = new SwrEngine<Quote>({ store, breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000, clock: clock.now }), codec: quoteCodec, logger: silentLogger, clock: clock.now, options: options('swr') })
  await engine.start()
  t.teardown(() => engine.close())
  const { counter, spec } = quotes()
  const first = await engine.getOrBuild('q:ACME', spec('ACME'))
  t.equal(first.status, 'miss')
  t.equal(first.writtenAt, clock.now())
  await engine.idle()
  clock.advance(59_999)
  t.equal((await engine.getOrBuild('q:ACME', spec('ACME'))).status, 'hit', 'fresh until staleSeconds')
  clock.advance(1)
  const stale = await Promise.all(Array.from({ length: 5 }, () => engine.getOrBuild('q:ACME', spec('ACME'))))
  t.ok(stale.every(s => s.status === 'stale' && s.value.cents === first.value.cents), 'stale: the old value, at once')
  await engine.idle()
  t.equal(counter.refreshes, 1, 'one refresh for five stale answers')
  t.equal(engine.counters.refreshSucceeded, 1)
  const refreshed = await engine.getOrBuild('q:ACME', spec('ACME'))
  t.equal(refreshed.status, 'hit')
  t.not(refreshed.value.cents, first.value.cents, 'the refreshed value')
  t.equal(refreshed.writtenAt, clock.now(), 'written at the refresh')
  t.equal(counter.builds, 1, 'no request build after the first')
})

t.test('a failed build answers with the fallback, is never stored, and is tried again by a later call', async t => {
  const clock = fakeClock()
  const engine = new SwrEngine<Quote>({ store: new MemoryStore({ maxBytes: 1 << 20, clock: clock.now }), breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, clock: clock.now, options: options('swr') })
  t.teardown(() => engine.close())
  const { counter, spec } = quotes({ fail: true })
  const answer = await engine.getOrBuild('q:FAIL', spec('FAIL'))
  t.equal(answer.status, 'fallback')
  t.same(answer.value, { symbol: 'FAIL', cents: -1 })
  t.equal((await engine.getOrBuild('q:FAIL', spec('FAIL'))).status, 'fallback', 'nothing was stored')
  t.equal(counter.builds, 2, 'not a negative cache: the second call built again')
  await t.rejects(engine.getOrBuild('q:FAIL', { ...spec('FAIL'), fallback: undefined }), BuildFailedError, 'without a fallback the call fails')
})

t.test('a refused admission frees the key at once for the next caller, whose own admission is asked', async t => {
  const engine = new SwrEngine<Quote>({ store: new MemoryStore({ maxBytes: 1 << 20 }), breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, options: options('swr') })
  t.teardown(() => engine.close())
  const { counter, spec } = quotes({ ms: 20 })
  const refusedBy = new Error('over the limit')
  const refused = engine.getOrBuild('q:ADM', spec('ADM', { admit: async () => { throw refusedBy } }))
  const admitted = engine.getOrBuild('q:ADM', spec('ADM', { admit: async () => {} }))
  const err = await refused.catch(e => e)
  t.ok(err instanceof BuildRefusedError && err.reason === refusedBy, 'the refusal, with what the admission threw')
  t.equal((await admitted).status, 'miss', 'the caller that shared the refused one built with its own admission')
  t.equal(counter.builds, 1)
})

t.test('a waiter whose poll takes the lock a failed builder just freed answers with the fallback, with no second build (Redis and memory)', async t => {
  const url = await sharedRedisUrl(t)
  const client = new Redis(url)
  const redisStore = new RedisStore(client)
  t.teardown(async () => { await redisStore.close(); client.disconnect() })
  const stores: Record<string, CacheStore> = { redis: redisStore, memory: new MemoryStore({ maxBytes: 1 << 20 }) }
  /** The same store, but every announcement reaches this subscriber `delayMs` late. */
  const lateAnnouncements = (store: CacheStore, delayMs: number): CacheStore => {
    const late = Object.create(store) as CacheStore
    late.subscribe = async (channel, onMessage) => await store.subscribe(channel, message => { setTimeout(() => onMessage(message), delayMs).unref() })
    return late
  }
  for (const [kind, store] of Object.entries(stores)) {
    const prefix = uniquePrefix(kind)
    const key = `${prefix}:quote:FAIL`
    const make = (via: CacheStore): SwrEngine<Quote> => new SwrEngine<Quote>({ store: via, breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, options: options(prefix, { pollMaxMs: 50 }) })
    const builderQuotes = quotes({ ms: 300, fail: true })
    const waiterQuotes = quotes({ fail: true })
    const builder = make(store)
    // The 'failed' announcement reaches the waiter long after its next poll: the race, every time.
    const waiter = make(lateAnnouncements(store, 1000))
    await builder.start()
    await waiter.start()
    t.teardown(async () => { await builder.close(); await waiter.close() })

    const building = builder.getOrBuild(key, builderQuotes.spec('FAIL'))
    await sleep(50) // the builder holds the lock
    const started = Date.now()
    const waited = await waiter.getOrBuild(key, waiterQuotes.spec('FAIL'))
    t.equal((await building).status, 'fallback', `${kind}: the builder answers with the fallback`)
    t.equal(waited.status, 'fallback', `${kind}: so does the waiter`)
    t.ok(Date.now() - started < 1000, `${kind}: on its first poll after the failure, not on the late announcement`)
    t.equal(builderQuotes.counter.builds + waiterQuotes.counter.builds, 1, `${kind}: one build, not a second one by the waiter`)
    t.notOk(await store.get(lockKey(key)), `${kind}: the waiter gave back the lock it took`)
    t.ok(await store.get(failedBuildKey(key)), `${kind}: the marker is short-lived, but still there`)
    t.equal((await waiter.getOrBuild(key, waiterQuotes.spec('FAIL'))).status, 'fallback')
    t.equal(waiterQuotes.counter.builds, 1, `${kind}: a later call builds again`)
  }
})

t.test('a waiter whose store fails while the build it waits for is under way, then fails, answers with the fallback: no second build (claims in PostgreSQL)', async t => {
  // The fleet test's double payment (issue 20): instance A builds under the lock
  // and its claim; B waits on the lock; Redis fails over, so B's reads fail
  // and B waits on A's claim instead; A's model call runs past its deadline.
  // A released its claim then, and B, taking it, paid the model a second time.
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const shared = new MemoryStore({ maxBytes: 1 << 20 })
  let bStoreDown = false
  const bStore = new Proxy(shared, {
    get (target, name, receiver) {
      const real = Reflect.get(target, name, receiver)
      if (typeof real !== 'function') return real
      return (...args: unknown[]) => {
        if (bStoreDown && name !== 'subscribe' && name !== 'close') return Promise.reject(new Error('connect ECONNREFUSED (failing over)'))
        return real.apply(target, args)
      }
    }
  }) as CacheStore
  const engineOn = (store: CacheStore): { engine: SwrEngine<Quote>, claims: BuildClaims } => {
    const claims = new BuildClaims(new BuildClaimsRepository(db), { guard: async op => await op() }, silentLogger, { ttlMs: 30_000, pollMinMs: 20, pollMaxMs: 100, entryVersion: 'quote@1' })
    const engine = new SwrEngine<Quote>({ store, breaker: new CircuitBreaker({ failureThreshold: 1000, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, claims, options: options('claims') })
    t.teardown(() => engine.close())
    return { engine, claims }
  }
  const a = engineOn(shared)
  const b = engineOn(bStore)
  let builds = 0
  let endBuild = (): void => {}
  const failing: BuildSpec<Quote> = {
    build: async () => { builds++; await new Promise<void>(resolve => { endBuild = resolve }); throw new Error('no answer within the deadline') },
    fallback: () => ({ symbol: 'ACME', cents: -1 })
  }
  const succeeding: BuildSpec<Quote> = { build: async () => { builds++; return { symbol: 'ACME', cents: 1 } }, fallback: () => ({ symbol: 'ACME', cents: -1 }) }
  const key = 'q:CLAIMED'
  const first = a.engine.getOrBuild(key, failing)
  await waitUntil(() => builds === 1, { intervalMs: 5, what: 'the build started' })
  const second = b.engine.getOrBuild(key, succeeding)
  await sleep(60)
  bStoreDown = true
  await waitUntil(() => b.claims.counters.waited === 1, { intervalMs: 5, what: 'B waits on the claim' })
  endBuild()
  t.equal((await first).status, 'fallback', 'the builder answers with the fallback')
  const waited = await second
  t.equal(builds, 1, 'one build: the waiter did not pay for the key again')
  t.equal(waited.status, 'fallback', 'the waiter answers as a waiter on the lock would')
  t.equal(waited.value.cents, -1)
  bStoreDown = false
  t.equal((await b.engine.getOrBuild(key, succeeding)).status, 'miss', 'a new request after the failure still builds')
  t.equal(builds, 2)
})

t.test('the claim\'s first look goes out with the lock request, and a claim won by a builder that then loses the lock is released at once (claims in PostgreSQL)', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const repository = new BuildClaimsRepository(db)
  const store = new MemoryStore({ maxBytes: 1 << 20 })
  // The lock request is held until the test lets it go, and the claim statements are counted.
  let lockAsked = (): void => {}
  let letLockGo = (): void => {}
  const lockHeld = new Promise<void>(resolve => { letLockGo = resolve })
  const slowLocks = holdingLockRequests(store, async () => { lockAsked(); await lockHeld })
  let claimStatements = 0
  const counted = { claim: async (...args: Parameters<BuildClaimsRepository['claim']>) => { claimStatements++; return await repository.claim(...args) }, release: repository.release.bind(repository), fail: repository.fail.bind(repository) }
  const claims = new BuildClaims(counted, { guard: async op => await op() }, silentLogger, { ttlMs: 30_000, pollMinMs: 20, pollMaxMs: 100, entryVersion: 'quote@1' })
  const engine = new SwrEngine<Quote>({ store: slowLocks, breaker: new CircuitBreaker({ failureThreshold: 1000, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, claims, options: options('firstlook') })
  t.teardown(() => engine.close())
  const q = quotes()
  const key = 'q:FIRSTLOOK'
  // Another instance holds the Redis lock (and, as happens in a race, not yet its claim).
  t.ok(await store.acquireLock(lockKey(key), 'someone-else', 30_000))
  const asked = new Promise<void>(resolve => { lockAsked = resolve })
  const call = engine.getOrBuild(key, q.spec('FIRSTLOOK'))
  await asked
  await waitUntil(() => claims.counters.won === 1, { intervalMs: 5, what: 'the claim statement, sent and answered while the lock request is still unanswered' })
  t.equal(claimStatements, 1, 'its first look won the free claim, in one statement')
  letLockGo()
  // The lock is someone else's: this call waits for that build, and gives back the claim it won.
  await waitUntil(async () => await repository.live() === 0, { intervalMs: 10, what: 'the claim released' })
  t.equal(q.counter.builds, 0, 'no build while another holds the lock')
  // That build ends without a value (its lock is released): this call takes the lock and builds, once.
  await store.releaseLock(lockKey(key), 'someone-else')
  t.equal((await call).status, 'miss')
  t.equal(q.counter.builds, 1)
})

t.test('a waiter that takes the lock just after the builder landed its value and released it answers with that value: no second build', async t => {
  // The race: the waiter reads the store (nothing yet), the builder writes and
  // releases, then the waiter's lock request succeeds. Held open here on purpose.
  const shared = new MemoryStore({ maxBytes: 1 << 20 })
  let lockCalls = 0
  let letLockGo = (): void => {}
  const held = new Promise<void>(resolve => { letLockGo = resolve })
  let pollAsked = (): void => {}
  const asked = new Promise<void>(resolve => { pollAsked = resolve })
  // The first lock request is the waiter's own miss; the second is its poll's.
  const waiterStore = holdingLockRequests(shared, async () => { if (++lockCalls === 2) { pollAsked(); await held } })
  const make = (store: CacheStore): SwrEngine<Quote> => {
    const engine = new SwrEngine<Quote>({ store, breaker: new CircuitBreaker({ failureThreshold: 1000, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, options: options('race') })
    t.teardown(() => engine.close())
    return engine
  }
  const builder = make(shared)
  const waiter = make(waiterStore)
  await Promise.all([builder.start(), waiter.start()])
  let builds = 0
  let endBuild = (): void => {}
  const spec: BuildSpec<Quote> = {
    build: async () => { builds++; if (builds === 1) await new Promise<void>(resolve => { endBuild = resolve }); return { symbol: 'RACE', cents: builds } },
    fallback: () => ({ symbol: 'RACE', cents: -1 })
  }
  const key = 'q:RACE'
  const first = builder.getOrBuild(key, spec)
  await waitUntil(() => builds === 1, { intervalMs: 5, what: 'the build started' })
  const second = waiter.getOrBuild(key, spec)
  await asked
  endBuild()
  t.equal((await first).status, 'miss')
  await builder.idle() // written, then the lock released
  letLockGo()
  const waited = await second
  t.equal(builds, 1, 'one build')
  t.equal(waited.status, 'coalesced')
  t.equal(waited.value.cents, 1, 'the builder\'s value')
})

t.test('lock lost (a holder paused past its TTL): the later builder\'s value is never overwritten (real Redis)', async t => {
  const { engines, prefix } = await redisEngines(t, 2, { buildDeadlineMs: 500, lockMarginMs: 0 })
  const key = `${prefix}:quote:PAUSE`
  const paused = quotes({ ms: 1500, cents: 1000 })
  const prompt = quotes({ ms: 10, cents: 2000 })
  const slow = engines[0].getOrBuild(key, paused.spec('PAUSE')) // takes the lock (TTL 500 ms), then pauses 1500 ms
  await sleep(700) // the lock has expired
  const fast = await engines[1].getOrBuild(key, prompt.spec('PAUSE'))
  t.equal(fast.status, 'miss')
  t.equal(fast.value.cents, 2001)
  const late = await slow
  t.equal(late.value.cents, 1001, 'the paused builder still answers its own caller')
  await Promise.all(engines.map(e => e.idle()))
  const stored = await engines[1].getOrBuild(key, prompt.spec('PAUSE'))
  t.equal(stored.status, 'hit')
  t.equal(stored.value.cents, 2001, 'the newer value was not overwritten')
})

t.test('store down: calls are answered by building without it (one build per key in this process), and the breaker opens', async t => {
  const failing = new MemoryStore({ maxBytes: 1 << 20 })
  const down = new Proxy(failing, {
    get (target, name, receiver) {
      const real = Reflect.get(target, name, receiver)
      if (typeof real !== 'function' || name === 'subscribe' || name === 'close') return real
      return async () => { throw new Error('connect ECONNREFUSED') }
    }
  }) as CacheStore
  const breaker = new CircuitBreaker({ name: 'store', failureThreshold: 3, cooldownMs: 60_000 })
  const engine = new SwrEngine<Quote>({ store: down, breaker, codec: quoteCodec, logger: silentLogger, options: options('down') })
  await engine.start()
  t.teardown(() => engine.close())
  const { counter, spec } = quotes({ ms: 50 })
  const answers = await Promise.all(Array.from({ length: 10 }, () => engine.getOrBuild('q:DOWN', spec('DOWN'))))
  t.equal(counter.builds, 1, 'one build for ten concurrent calls')
  t.ok(answers.every(a => a.status === 'fallback' && a.value.cents === 101), 'all answered with the built value, as a fallback')
  t.equal(answers.filter(a => a.built).length, 1)
  for (let i = 0; i < 3; i++) await engine.getOrBuild(`q:DOWN${i}`, spec(`DOWN${i}`))
  t.equal(breaker.state, 'open', 'the failures opened the breaker')
  const started = performance.now()
  const fast = await engine.getOrBuild('q:FAST', quotes().spec('FAST'))
  t.equal(fast.status, 'fallback')
  t.ok(performance.now() - started < 100, 'with the breaker open, no store call is waited on')
  t.ok(engine.counters.storeErrors >= 3)
})

t.test('the in-process tier answers fresh entries with no store call, and an invalidation on one instance evicts them on the others (real Redis)', async t => {
  const url = await sharedRedisUrl(t)
  const prefix = uniquePrefix('local')
  const make = async (): Promise<{ engine: SwrEngine<Quote>, local: LocalTier<Quote> }> => {
    const client = new Redis(url)
    const store = new RedisStore(client)
    const local = new LocalTier<Quote>({ maxEntries: 10, ttlMs: 60_000 })
    const engine = new SwrEngine<Quote>({ store, local, breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }), codec: quoteCodec, logger: silentLogger, options: options(prefix) })
    await engine.start()
    t.teardown(async () => { await engine.close(); await store.close(); client.disconnect() })
    return { engine, local }
  }
  const a = await make()
  const b = await make()
  const { spec } = quotes()
  const key = `${prefix}:quote:LOCAL`
  await a.engine.getOrBuild(key, spec('LOCAL'))
  await a.engine.idle()
  t.equal((await b.engine.getOrBuild(key, spec('LOCAL'))).status, 'hit')
  t.ok(b.local.get(key), 'b keeps it in memory')
  t.ok(b.engine.localHit(key), 'and answers it from there')
  await a.engine.invalidate({ key })
  const deadline = Date.now() + 2000
  while (b.local.get(key) !== undefined && Date.now() < deadline) await sleep(10)
  t.equal(b.local.get(key), undefined, 'the announcement evicted it on b')
})

t.test('the in-process tier bounded by bytes: a large value makes room by evicting the least recently used', async t => {
  const tier = new LocalTier<Quote>({ maxEntries: 100, ttlMs: 60_000, maxBytes: 100, sizeOf: entry => (entry.value as Quote).symbol.length })
  const entry = (symbol: string): Entry<Quote> => ({ value: { symbol, cents: 1 }, createdAt: 0, refreshedAt: 0, staleAfter: 1 })
  tier.set('a', entry('x'.repeat(40)))
  tier.set('b', entry('y'.repeat(40)))
  tier.get('a')
  tier.set('c', entry('z'.repeat(40)))
  t.ok(tier.get('a') !== undefined, 'recently used: kept')
  t.equal(tier.get('b'), undefined, 'least recently used: evicted for the bytes')
  t.equal(tier.size, 2)
  t.throws(() => new LocalTier<Quote>({ maxEntries: 1, ttlMs: 1, maxBytes: 10 }), /maxBytes must be at least 1, with sizeOf/)
})

t.test('with build claims, a first build reads nothing from the durable tier (the claim\'s statement says the row is not there); a row that is there is read once, through the claim\'s look', async t => {
  // The durable tier in memory, its reads counted, and a claim store that sees its rows as PostgreSQL's does.
  const rows = new Map<string, { entry: Entry<Quote>, version: number }>()
  let reads = 0
  const repository: DurableRepository<Quote> = {
    get: async key => { reads++; return rows.get(key) ?? null },
    write: async (key, entry, version) => { const existed = rows.has(key); rows.set(key, { entry, version }); return { written: true, existed } }
  }
  const owners = new Map<string, string>()
  const claimStore: BuildClaimStore = {
    claim: async (key, owner) => {
      const built = rows.has(key)
      const won = !built && (owners.get(key) ?? owner) === owner
      if (won) owners.set(key, owner)
      return { won, built, failed: false }
    },
    release: async (key, owner) => { if (owners.get(key) === owner) owners.delete(key) },
    fail: async (key, owner) => { if (owners.get(key) === owner) owners.delete(key) }
  }
  const breaker = new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 })
  const durable = new DurableTier(repository, breaker, silentLogger, { readTimeoutMs: 2000 })
  const claims = new BuildClaims(claimStore, durable, silentLogger, { ttlMs: 30_000, pollMinMs: 20, pollMaxMs: 100, entryVersion: 'quote@1' })
  const engine = new SwrEngine<Quote>({ store: new MemoryStore({ maxBytes: 1 << 20 }), breaker, codec: quoteCodec, logger: silentLogger, durable, claims, options: options('claimlook') })
  t.teardown(() => engine.close())
  const q = quotes()
  t.equal((await engine.getOrBuild('q:NEW', q.spec('NEW'))).status, 'miss')
  t.equal(reads, 0, 'no durable read on the way to a first build: the claim said the row is not there')
  await engine.idle()
  t.ok(rows.has('q:NEW'), 'the built value landed in the durable tier')
  t.equal(owners.size, 0, 'and its claim was released')
  // Another instance's row, the store having lost it: found through the claim's look, read once, not built.
  rows.set('q:OLD', { entry: { value: { symbol: 'OLD', cents: 7 }, createdAt: Date.now(), refreshedAt: Date.now(), staleAfter: Date.now() + 60_000 }, version: 1 })
  const old = await engine.getOrBuild('q:OLD', q.spec('OLD'))
  t.equal(old.status, 'durable')
  t.equal(old.value.cents, 7)
  t.equal(reads, 1, 'one durable read: the row the claim said is there')
  t.equal(owners.size, 0, 'no claim taken for a row that is there')
  t.equal(q.counter.builds, 1, 'no build for it')
  t.equal(durable.readsGivenUp.error, 0)
})
