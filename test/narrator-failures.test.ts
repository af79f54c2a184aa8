import t from 'tap'
import { build, exampleBody, stack } from './helper.ts'

const post = { method: 'POST' as const, url: '/api/narrative', payload: exampleBody }

t.test('the model answering 500: the template answers as a fallback, and it is not cached', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  s.openai.setMode('error500')
  const res = await app.inject(post)
  t.equal(res.statusCode, 200)
  t.equal(res.json().cache.status, 'fallback')
  t.equal(res.headers['x-cache'], 'FALLBACK')
  t.equal(res.json().engine, 'template')
  t.equal(s.openai.calls, 2, 'OPENAI_MAX_ATTEMPTS (2) attempts, no more')
  s.openai.setMode('ok')
  const next = await app.inject(post)
  t.equal(next.json().cache.status, 'miss', 'the fallback was not cached')
  t.equal(next.json().engine, 'gpt-4o')
  t.equal((await app.inject(post)).json().cache.status, 'hit')
})

t.test('the model answering 429 with Retry-After: honoured, then the model answers', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '1' }, body: { error: { message: 'slow down', type: 'rate_limit' } } })
  const started = Date.now()
  const res = await app.inject(post)
  const took = Date.now() - started
  t.equal(res.json().cache.status, 'miss')
  t.equal(res.json().engine, 'gpt-4o')
  t.equal(s.openai.calls, 2)
  t.ok(took >= 950, `waited for Retry-After (${took} ms)`)
})

t.test('a Retry-After longer than the deadline is not waited for: the template answers within the deadline', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  s.openai.failNext(5, { status: 429, headers: { 'retry-after': '600' } })
  const started = Date.now()
  const res = await app.inject(post)
  t.ok(Date.now() - started < 3500, 'no ten-minute wait')
  t.equal(res.json().cache.status, 'fallback')
  t.ok(s.openai.calls <= 2, 'no retry storm')
})

t.test('the model hanging: the template answers within the deadline, and is not cached as the model\'s', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, OPENAI_TIMEOUT_MS: '1500' } })
  s.openai.setMode('hang')
  const started = Date.now()
  const res = await app.inject(post)
  const took = Date.now() - started
  t.equal(res.statusCode, 200)
  t.equal(res.json().cache.status, 'fallback')
  t.ok(took >= 1400 && took < 2500, `answered at the 1.5 s deadline (${took} ms)`)
  s.openai.setMode('ok')
  t.equal((await app.inject(post)).json().cache.status, 'miss')
})

t.test('malformed and empty completions are never cached', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  for (const mode of ['malformed', 'empty'] as const) {
    s.openai.setMode(mode)
    const res = await app.inject(post)
    t.equal(res.json().cache.status, 'fallback', `${mode}: fallback`)
    t.equal(res.json().engine, 'template')
  }
  s.openai.setMode('ok')
  t.equal((await app.inject(post)).json().cache.status, 'miss', 'nothing was cached')
})

t.test('waiters on other instances follow a failed build to the template instead of waiting it out', async t => {
  const s = await stack(t)
  s.openai.setLatency(300)
  s.openai.setMode('error500')
  const a = await build(t, { env: s.env })
  const b = await build(t, { env: s.env })
  const started = Date.now()
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).inject(post)))
  t.ok(answers.every(r => r.statusCode === 200 && r.json().cache.status === 'fallback'))
  t.ok(Date.now() - started < 2500, 'nobody waited for the full deadline')
  t.equal(s.openai.calls, 2, 'one builder, two attempts: the waiters did not call the model')
})
