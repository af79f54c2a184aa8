import t from 'tap'
import { build, exampleBody, stack, bodyFor } from './helper.ts'

t.test('real Redis + model: a miss calls the model once, then hits; same bucket hits', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })

  const first = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.equal(first.statusCode, 200)
  const a = first.json()
  t.equal(a.cache.status, 'miss')
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(a.engine, 'gpt-4o')
  t.equal(a.version, 'v2', 'the prompt version that wrote it')
  t.match(a.cache.key, new RegExp(`^${s.prefix}:v1:narrative@1\\.0\\.0:v2:gpt-4o:[0-9a-f]{10}:[0-9a-f]{40}$`))
  t.ok(a.narrative.summary.length > 0)
  t.equal(s.openai.calls, 1)
  t.notMatch(JSON.stringify(s.openai.requests[0].body), /u-123/, 'userId never reaches the model')

  const second = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const b = second.json()
  t.equal(b.cache.status, 'hit')
  t.equal(second.headers['x-cache'], 'HIT')
  t.same(b.narrative, a.narrative)
  t.equal(b.cache.key, a.cache.key)
  t.equal(s.openai.calls, 1, 'no second model call')

  const sameBucket = structuredClone(exampleBody)
  sameBucket.profile.percentages = { Sirius: 18.9, Pleiades: 15.4, Arcturus: 42.1 }
  sameBucket.userId = 'someone-else'
  const third = await app.inject({ method: 'POST', url: '/api/narrative', payload: sameBucket })
  t.equal(third.json().cache.status, 'hit', 'a profile in the same 0.5 buckets is a hit')
  t.equal(third.json().cache.key, a.cache.key)
  t.equal(s.openai.calls, 1)

  const otherLocale = await app.inject({ method: 'POST', url: '/api/narrative', payload: { ...exampleBody, locale: 'fr' } })
  t.equal(otherLocale.json().cache.status, 'miss', 'the locale is part of the key')
  t.equal(s.openai.calls, 2)
})

t.test('the cached value in Redis has the CachedNarrative shape and the TTL', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, CACHE_TTL_DAYS: '30', CACHE_STALE_DAYS: '7' } })
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const key = res.json().cache.key
  const { Redis } = await import('ioredis')
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  await app.engine.idle() // the write lands after the answer
  const raw = await redis.getBuffer(key)
  t.ok(raw)
  const entry = JSON.parse(raw!.subarray(14).toString())
  t.same(Object.keys(entry).sort(), ['engine', 'locale', 'meta', 'narrative', 'profile', 'prompt_hash', 'prompt_version', 'version'])
  t.equal(entry.version, 'narrative@1.0.0')
  t.equal(entry.prompt_version, 'v2')
  t.equal(entry.meta.ttl_seconds, 30 * 86400)
  t.equal(entry.meta.compression, 'none')
  t.equal(entry.meta.stale_after - entry.meta.refreshed_at, 7 * 86400 * 1000)
  t.notOk(JSON.stringify(entry).includes('u-123'), 'userId is never stored in the cached value')
  const ttl = await redis.pttl(key)
  t.ok(ttl > 29.9 * 86400 * 1000 && ttl <= 30 * 86400 * 1000, `TTL is CACHE_TTL_DAYS (${ttl} ms)`)
})

t.test('through a real listening server', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const address = app.server.address() as { port: number }
  const url = `http://127.0.0.1:${address.port}/api/narrative`
  const post = async (): Promise<Response> => await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(exampleBody) })
  const miss = await post()
  t.equal(miss.status, 200)
  t.equal(miss.headers.get('x-cache'), 'MISS')
  const hit = await post()
  t.equal(hit.headers.get('x-cache'), 'HIT')
  t.same(((await hit.json()) as { narrative: unknown }).narrative, ((await miss.json()) as { narrative: unknown }).narrative)
  t.equal(s.openai.calls, 1)
})

t.test('in-process store mode (no REDIS_URL) caches like Redis', async t => {
  const s = await stack(t)
  const env = { ...s.env, REDIS_URL: '' }
  const app = await build(t, { env })
  t.equal(app.store.kind, 'memory')
  const a = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  const b = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(a.json().cache.status, 'miss')
  t.equal(b.json().cache.status, 'hit')
  t.equal(s.openai.calls, 1)
  const ready = await app.inject('/ready')
  t.equal(ready.json().redis, 'embedded')
})

t.test('template narrator mode (no OPENAI_API_KEY): cached, miss then hit, deterministic', async t => {
  const app = await build(t, { env: {} })
  const a = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  const b = await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.equal(a.json().engine, 'template')
  t.equal(a.json().cache.status, 'miss')
  t.equal(b.json().cache.status, 'hit')
  t.match(a.json().narrative.summary, /Arcturus/)
  const other = await build(t, { env: {} })
  const c = await other.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })
  t.same(c.json().narrative, a.json().narrative, 'the template is deterministic')
})

t.test('health, ready, documentation', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  t.same((await app.inject('/health')).json(), { status: 'ok' })
  const ready = await app.inject('/ready')
  t.equal(ready.statusCode, 200)
  t.match(ready.json(), { status: 'ready', redis: 'up', breaker: 'closed', narrator: 'gpt-4o' })
  const docs = await app.inject('/documentation/json')
  t.equal(docs.statusCode, 200)
  t.ok(docs.json().paths['/api/narrative'].post)
  const ui = await app.inject('/documentation/')
  t.equal(ui.statusCode, 200)
  t.match(ui.headers['content-type'], /html/)
})

t.test('Server-Timing: a miss says how long the model took and how long the rest took; a hit says nothing of the model', async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  const app = await build(t, { env: s.env })
  const started = Date.now()
  const miss = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })
  const took = Date.now() - started
  t.equal(miss.json().cache.status, 'miss')
  const timing = /^model;dur=([0-9.]+), app;dur=([0-9.]+)$/.exec(String(miss.headers['server-timing']))
  t.ok(timing !== null, `the header: ${String(miss.headers['server-timing'])}`)
  const [model, rest] = [Number(timing?.[1]), Number(timing?.[2])]
  t.ok(model >= 295 && model <= took, `model;dur ${model} ms: the stand-in's 300 ms, within the ${took} ms the request took`)
  t.ok(model + rest <= took + 1, `model + app (${model} + ${rest}) is no more than the whole request (${took} ms)`)
  const hit = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })
  t.equal(hit.json().cache.status, 'hit')
  t.equal(hit.headers['server-timing'], undefined)
})
