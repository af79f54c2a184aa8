// Every answer carries its request id in X-Request-Id; an incoming one is
// kept when it is a short token (src/request-id.ts), and it is the id of the
// request's log lines.
import t from 'tap'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { REQUEST_ID_PATTERN, requestIdOf } from '../src/request-id.ts'
import { build, bodyFor, stack } from './helper.ts'
import type { IncomingMessage } from 'node:http'

const fresh = /^req-[0-9a-z]+$/

t.test('requestIdOf: a short token is kept; anything else is a fresh id', async t => {
  const of = (id: string | string[] | undefined): string => requestIdOf({ headers: id === undefined ? {} : { 'x-request-id': id } } as unknown as IncomingMessage)
  for (const kept of ['abc', 'A-1_b.c:d', 'x'.repeat(64), '7f3e9c1a-2b4d-4e6f-8a0b-1c2d3e4f5a6b']) t.equal(of(kept), kept, `kept: ${kept}`)
  for (const refused of ['', 'x'.repeat(65), 'two words', 'a"b', 'a\tb', 'é', '<script>', '../..']) t.match(of(refused), fresh, `fresh instead of ${JSON.stringify(refused)}`)
  t.match(of(undefined), fresh)
  t.match(of(['a', 'b']), fresh, 'a repeated header is not a token')
  t.ok(REQUEST_ID_PATTERN.test('abc'))
  t.not(of(undefined), of(undefined), 'fresh ids differ')
})

t.test('every answer says its request id: a hit, a miss, a refusal, a 404; an incoming token is honoured', async t => {
  const s = await stack(t)
  const fastify = await build(t, { env: s.env })
  const post = (headers: Record<string, string> = {}) => fastify.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1), headers })
  const miss = await post()
  t.equal(miss.statusCode, 200)
  t.match(miss.headers['x-request-id'], fresh)
  const given = await post({ 'x-request-id': 'lb-7f3e9c1a' })
  t.equal(given.headers['x-request-id'], 'lb-7f3e9c1a', 'an incoming short token is honoured')
  const bad = await post({ 'x-request-id': 'not a token; drop table' })
  t.match(bad.headers['x-request-id'], fresh, 'anything else is replaced')
  const refused = await fastify.inject({ method: 'POST', url: '/api/narrative', payload: { nope: 1 }, headers: { 'x-request-id': 'r-1' } })
  t.equal(refused.statusCode, 400)
  t.equal(refused.headers['x-request-id'], 'r-1', 'on a refusal')
  const missing = await fastify.inject({ method: 'GET', url: '/nowhere', headers: { 'x-request-id': 'r-2' } })
  t.equal(missing.statusCode, 404)
  t.equal(missing.headers['x-request-id'], 'r-2', 'on a 404')
  const health = await fastify.inject({ method: 'GET', url: '/health' })
  t.match(health.headers['x-request-id'], fresh)
})

t.test('a memory hit carries the request id, and its log line has the same id', async t => {
  const s = await stack(t)
  const config = loadConfig({ LOG_LEVEL: 'info', OPENAI_TIMEOUT_MS: '3000', ...s.env, LOCAL_CACHE_MAX_ENTRIES: '100', LOCAL_CACHE_TTL_MS: '60000', DATABASE_URL: '' })
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line)); cb() } })
  const fastify = Fastify(serverOptions(config, { level: 'info', stream }))
  t.teardown(() => fastify.close())
  await fastify.register(fp(app), { config })
  await fastify.ready()
  const text = JSON.stringify(bodyFor(2))
  const post = (id: string) => fastify.inject({ method: 'POST', url: '/api/narrative', payload: text, headers: { 'content-type': 'application/json', 'x-request-id': id } })
  await post('first')
  await fastify.engine.idle()
  await post('second')
  const hit = await post('from-memory')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.headers['x-request-id'], 'from-memory')
  const line = lines.find(l => l.msg === 'request' && l.reqId === 'from-memory')
  t.match(line, { route: 'POST /api/narrative', statusCode: 200, cache: 'hit' }, 'the request line of the hit has its id')
})
