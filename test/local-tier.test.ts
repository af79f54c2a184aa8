import t from 'tap'
import { Redis } from 'ioredis'
import { build, bodyFor, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { sleep, waitUntil } from './support/wait.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
const post = { method: 'POST' as const, url: '/api/narrative' }

t.test('hits from the in-process tier cost no Redis round trip', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '5000' } })
  t.ok(app.localTier, 'on in front of Redis')
  await app.inject({ ...post, payload: bodyFor(1) })
  await app.engine.idle() // the write lands after the answer, and with it the entry in this tier
  let gets = 0
  const original = app.store.get.bind(app.store)
  app.store.get = async key => { gets++; return await original(key) }
  for (let i = 0; i < 20; i++) t.equal((await app.inject({ ...post, payload: bodyFor(1) })).json().cache.status, 'hit')
  t.equal(gets, 0, 'no GET for 20 hits')
  t.equal(app.localTier!.hits, 20)
})

t.test('coherent across instances: a delete or a refresh elsewhere evicts at once over pub/sub', async t => {
  const s = await stack(t)
  const env = { ...s.env, JWT_SECRET: SECRET, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000' }
  const a = await build(t, { env })
  const b = await build(t, { env })
  await a.inject({ ...post, payload: bodyFor(2) })
  t.equal((await b.inject({ ...post, payload: bodyFor(2) })).json().cache.status, 'hit')
  t.equal(b.localTier!.size, 1, 'b holds it in memory')
  await a.durable.close()
  const del = await a.inject({ method: 'DELETE', url: '/api/narrative/cache?pattern=*', headers: auth })
  t.equal(del.json().deleted, 1)
  await waitUntil(() => b.localTier!.size === 0, { timeoutMs: 1000, what: 'b to drop its copy' })
  const after = await b.inject({ ...post, payload: bodyFor(2) })
  t.equal(after.json().cache.status, 'miss', 'b does not serve the deleted entry (TTL was 60 s)')
})

t.test('the bound: with announcements lost, an instance serves a replaced entry for at most LOCAL_CACHE_TTL_MS', async t => {
  const s = await stack(t)
  const ttl = 700
  const env = { ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: String(ttl) }
  const a = await build(t, { env })
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  const first = (await a.inject({ ...post, payload: bodyFor(3) })).json()
  t.equal((await a.inject({ ...post, payload: bodyFor(3) })).json().cache.status, 'hit')
  // Replace the value behind the app's back: no announcement at all.
  const raw = (await redis.getBuffer(first.cache.key))!
  const entry = JSON.parse(raw.subarray(14).toString())
  entry.narrative.summary = 'replaced elsewhere'
  const replacedAt = Date.now()
  await redis.set(first.cache.key, Buffer.concat([Buffer.from(String(Date.now()).padStart(13, '0') + 'j'), Buffer.from(JSON.stringify(entry))]))
  let servedOldUntil = replacedAt
  for (;;) {
    const res = (await a.inject({ ...post, payload: bodyFor(3) })).json()
    if (res.narrative.summary === 'replaced elsewhere') break
    servedOldUntil = Date.now()
    if (Date.now() - replacedAt > ttl * 3) break
    await sleep(25)
  }
  const staleFor = servedOldUntil - replacedAt
  t.ok(staleFor <= ttl + 50, `served the old entry for ${staleFor} ms, within the ${ttl} ms bound`)
  t.equal((await a.inject({ ...post, payload: bodyFor(3) })).json().narrative.summary, 'replaced elsewhere')
})
