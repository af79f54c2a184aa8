import t from 'tap'
import { gzipSync } from 'node:zlib'
import { Redis } from 'ioredis'
import { build, exampleBody, stack } from './helper.ts'
import { NarrativeEngine } from '../src/swr/engine.ts'
import { RedisStore } from '../src/swr/redis-store.ts'
import { CircuitBreaker } from '../src/swr/breaker.ts'
import { silentLogger } from '../src/swr/logger.ts'
import { normalizeProfile, type Profile } from '../src/domain/profile.ts'
import { MemoryStore } from '../src/swr/memory-store.ts'
import { cacheKey, failedBuildKey, lockKey } from '../src/domain/cache-key.ts'
import { NarratorError, type Generation, type Narrator } from '../src/narrator/narrator.ts'
import { withVersion, type CacheStore } from '../src/swr/store.ts'
import { sleep, waitUntil } from './support/wait.ts'

t.test('a lock holder that dies: the lock expires and another instance builds', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  // Plant a lock as a holder that then died, for a key nobody has built yet.
  const job = app.narratives.keyOf({ ...exampleBody, profile: exampleBody.profile as never })
  await redis.set(lockKey(job.key), 'a-dead-holder', 'PX', 1500)
  const started = Date.now()
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const took = Date.now() - started
  t.equal(res.statusCode, 200)
  t.equal(res.json().cache.status, 'miss', 'built after the dead holder\'s lock expired')
  t.equal(res.json().engine, 'gpt-4o')
  t.ok(took >= 1300 && took < 4000, `waited for the expiry, not for ever (${took} ms)`)
  t.equal(s.openai.calls, 1)
  // Released right after the answer (off the request's path), not left to expire (its TTL is the deadline plus 5 s).
  await waitUntil(async () => await redis.exists(lockKey(job.key)) === 0, { timeoutMs: 1000, what: 'the lock to be released' })
  t.pass('and released the lock it took')
})

class SlowNarrator implements Narrator {
  readonly isModel = true
  calls = 0
  readonly engine: string
  private readonly ms: number
  private readonly text: string

  constructor (engine: string, ms: number, text: string) {
    this.engine = engine
    this.ms = ms
    this.text = text
  }

  async generate (): Promise<Generation> {
    this.calls++
    // Ignores the abort signal on purpose: a paused process does not see its deadline either.
    await sleep(this.ms)
    return { narrative: { summary: this.text, bullets: [] }, engine: this.engine }
  }
}

t.test('a holder paused past its lock TTL never overwrites the newer value', async t => {
  const s = await stack(t)
  const clients = [new Redis(s.redisUrl), new Redis(s.redisUrl)]
  t.teardown(() => Promise.all(clients.map(c => c.quit())))
  const policy = { attempts: 1, baseDelayMs: 10, maxDelayMs: 10, deadlineMs: 500 }
  const stores = clients.map(c => new RedisStore(c))
  t.teardown(() => Promise.all(stores.map(st => st.close())))
  const make = (narrator: Narrator, client: Redis): NarrativeEngine => new NarrativeEngine({
    store: stores[clients.indexOf(client)],
    breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }),
    narrator,
    logger: silentLogger,
    options: { prefix: s.prefix, ttlSeconds: 3600, staleSeconds: 600, generation: policy, refresh: policy, maxWaitMs: 5000, pollMinMs: 20, pollMaxMs: 100, lockMarginMs: 0 }
  })
  const paused = new SlowNarrator('gpt-4o', 1500, 'written by the paused builder')
  const prompt = new SlowNarrator('gpt-4o', 10, 'written by the later builder')
  const a = make(paused, clients[0])
  const b = make(prompt, clients[1])
  await a.start()
  await b.start()
  t.teardown(async () => { await a.close(); await b.close() })
  const profile = normalizeProfile(exampleBody.profile as Profile)
  const job = { key: cacheKey(profile, 'en', { prefix: s.prefix }), profile, locale: 'en' }

  const slow = a.resolve(job) // takes the lock (TTL 500 ms), then pauses 1500 ms
  await sleep(700) // the lock has expired
  const fast = await b.resolve(job)
  t.equal(fast.status, 'miss')
  t.equal(fast.narrative.summary, 'written by the later builder')
  const late = await slow
  t.equal(late.narrative.summary, 'written by the paused builder', 'the paused builder still answers its own caller')
  const stored = await b.resolve(job)
  t.equal(stored.status, 'hit')
  t.equal(stored.narrative.summary, 'written by the later builder', 'the newer value was not overwritten')
})

class FailingNarrator implements Narrator {
  readonly engine = 'gpt-4o'
  readonly isModel = true
  calls = 0
  private readonly ms: number

  constructor (ms: number) {
    this.ms = ms
  }

  async generate (): Promise<Generation> {
    this.calls++
    await sleep(this.ms)
    throw new NarratorError('model answered 500', false, undefined, 500)
  }
}

/** The same store, but every announcement reaches this subscriber `delayMs` late. */
function lateAnnouncements (store: CacheStore, delayMs: number): CacheStore {
  const late = Object.create(store) as CacheStore
  late.subscribe = async (channel, onMessage) => await store.subscribe(channel, message => { setTimeout(() => onMessage(message), delayMs).unref() })
  return late
}

t.test('a waiter whose poll takes the lock a failed builder just freed answers from the template, with no second model call (Redis and memory)', async t => {
  const s = await stack(t)
  const client = new Redis(s.redisUrl)
  const redisStore = new RedisStore(client)
  t.teardown(async () => { await redisStore.close(); client.quit().catch(() => {}) })
  const stores: Record<string, CacheStore> = { redis: redisStore, memory: new MemoryStore({ maxBytes: 1 << 20 }) }
  const policy = { attempts: 1, baseDelayMs: 10, maxDelayMs: 10, deadlineMs: 2000 }
  const profile = normalizeProfile(exampleBody.profile as Profile)
  for (const [kind, store] of Object.entries(stores)) {
    const job = { key: cacheKey(profile, 'en', { prefix: `${s.prefix}-${kind}` }), profile, locale: 'en' }
    const make = (narrator: Narrator, via: CacheStore): NarrativeEngine => new NarrativeEngine({
      store: via,
      breaker: new CircuitBreaker({ failureThreshold: 5, cooldownMs: 1000 }),
      narrator,
      logger: silentLogger,
      options: { prefix: `${s.prefix}-${kind}`, ttlSeconds: 3600, staleSeconds: 600, generation: policy, refresh: policy, maxWaitMs: 5000, pollMinMs: 20, pollMaxMs: 50 }
    })
    const builderModel = new FailingNarrator(300)
    const waiterModel = new FailingNarrator(0)
    const builder = make(builderModel, store)
    // The 'failed' announcement reaches the waiter long after its next poll: the race, every time.
    const waiter = make(waiterModel, lateAnnouncements(store, 1000))
    await builder.start()
    await waiter.start()
    t.teardown(async () => { await builder.close(); await waiter.close() })

    const building = builder.resolve(job)
    await sleep(50) // the builder holds the lock
    const started = Date.now()
    const waited = await waiter.resolve(job)
    t.equal((await building).status, 'fallback', `${kind}: the builder answers from the template`)
    t.equal(waited.status, 'fallback', `${kind}: so does the waiter`)
    t.equal(waited.engine, 'template')
    t.ok(Date.now() - started < 1000, `${kind}: on its first poll after the failure, not on the late announcement`)
    t.equal(builderModel.calls + waiterModel.calls, 1, `${kind}: one model call, not a second build by the waiter`)
    t.notOk(await store.get(lockKey(job.key)), `${kind}: the waiter gave back the lock it took`)
    t.ok(await store.get(failedBuildKey(job.key)), `${kind}: the marker is short-lived, but still there`)

    // Not a negative cache: a fresh request still asks the model.
    t.equal((await waiter.resolve(job)).status, 'fallback')
    t.equal(waiterModel.calls, 1, `${kind}: a later request tries the model again`)
  }
})

t.test('corrupt entries of each kind are deleted and regenerated', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const first = (await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json()
  const key: string = first.cache.key
  await app.engine.idle() // the first generation's store write has landed
  await app.durable.close() // and its durable write
  const good = (await redis.getBuffer(key))!
  const json = JSON.parse(good.subarray(14).toString())
  const now = Date.now()
  const corruptions: Record<string, Buffer> = {
    'no version header': Buffer.from('{"narrative":"x"}'),
    'unknown format byte': withVersion(now, Buffer.from('q{}')),
    'bad gzip': withVersion(now, Buffer.concat([Buffer.from('z'), Buffer.from('not gzip at all')])),
    'gzip bomb past the size limit': withVersion(now, Buffer.concat([Buffer.from('z'), gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x20))])),
    'bad JSON': withVersion(now, Buffer.from('j{"version":')),
    'wrong shape': withVersion(now, Buffer.from('j' + JSON.stringify({ ...json, narrative: { text: 'no summary' } }))),
    'wrong version': withVersion(now, Buffer.from('j' + JSON.stringify({ ...json, version: 'narrative@0.9.0' })))
  }
  for (const [kind, value] of Object.entries(corruptions)) {
    // With the durable copy in PostgreSQL: restored from it, no model call.
    await redis.set(key, value)
    let calls = s.openai.calls
    const restored = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
    t.equal(restored.statusCode, 200, `${kind}: 200`)
    t.equal(restored.json().cache.status, 'durable', `${kind}: restored from the durable tier`)
    t.equal(s.openai.calls, calls, `${kind}: no model call`)
    t.equal((await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).json().cache.status, 'hit', `${kind}: Redis re-populated`)

    // Without it: regenerated.
    await redis.set(key, value)
    await app.durable.close()
    await app.db.narratives.deleteByKeys([key])
    calls = s.openai.calls
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
    t.equal(res.json().cache.status, 'miss', `${kind}: regenerated`)
    t.equal(s.openai.calls, calls + 1, `${kind}: one model call`)
    const healed = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
    t.equal(healed.json().cache.status, 'hit', `${kind}: the entry was replaced by a good one`)
    await app.durable.close() // the regenerated entry's durable write has landed
  }
  t.equal(app.engine.counters.corruptEntries, 2 * Object.keys(corruptions).length)
})

t.test('a builder answers before its write lands; a request meanwhile hits the entry in hand; other instances wait for the lock', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100' } })
  const other = await build(t, { env: { ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100' } })
  s.openai.setLatency(100)
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.disconnect())
  // The store write takes 400 ms to land.
  const setIfNewer = app.store.setIfNewer.bind(app.store)
  app.store.setIfNewer = async (...args) => { await sleep(400); return await setIfNewer(...args) }
  const started = Date.now()
  const miss = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const answeredIn = Date.now() - started
  t.equal(miss.json().cache.status, 'miss')
  t.ok(answeredIn < 400, `answered without waiting for the write (${answeredIn} ms)`)
  const key = miss.json().cache.key as string
  t.equal(await redis.exists(lockKey(key)), 1, 'the lock is held until the write lands')
  t.equal(await redis.exists(key), 0, 'the value has not landed yet')
  const nextStarted = Date.now()
  const next = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const nextIn = Date.now() - nextStarted
  t.equal(next.json().cache.status, 'hit', 'the next request in this process hit')
  t.same(next.json().narrative, miss.json().narrative)
  t.ok(nextIn < 200, `without waiting for the write (${nextIn} ms)`)
  // Another instance meets the held lock and waits for the announcement: no second model call.
  const elsewhere = await other.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.equal(elsewhere.json().cache.status, 'miss', 'another instance waited for the builder (answered as a miss it did not cause)')
  t.same(elsewhere.json().narrative, miss.json().narrative)
  t.equal(s.openai.calls, 1, 'one model call')
  t.ok(await redis.exists(key) === 1, 'the value is in Redis')
  await waitUntil(async () => await redis.exists(lockKey(key)) === 0, { timeoutMs: 1000, what: 'the lock to be released after the write' })
  t.pass('then the lock is released')
})
