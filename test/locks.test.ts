import t from 'tap'
import { gzipSync } from 'node:zlib'
import { Redis } from 'ioredis'
import { build, exampleBody, stack } from './helper.ts'
import { lockKey } from '../src/swr/keys.ts'
import { withVersion } from '../src/swr/store.ts'
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
