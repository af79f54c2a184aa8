import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, bodyFor, exampleBody, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { waitUntil } from './support/wait.ts'

const SECRET = 'test-secret-that-is-long-enough-0123456789'
const auth = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }

async function narrative (app: FastifyInstance, body: object): Promise<number> {
  return (await app.inject({ method: 'POST', url: '/api/narrative', payload: body })).statusCode
}

t.test('GET /api/narrative/history: requests per minute by status, refusals apart, model-call percentiles', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  // 2 misses, 3 hits, one refusal of the domain rules.
  for (const b of [exampleBody, exampleBody, bodyFor(1), exampleBody, bodyFor(1)]) t.equal(await narrative(app, b), 200)
  t.equal(await narrative(app, { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } }), 400)
  await app.engine.idle()
  await app.db.buffer.flush()

  const res = await app.inject({ method: 'GET', url: '/api/narrative/history?minutes=5', headers: auth })
  t.equal(res.statusCode, 200)
  const h = res.json()
  t.equal(h.buckets.length, 5, 'one bucket per minute, empty ones included')
  t.equal(h.to - h.from, 4 * 60_000)
  t.ok(h.buckets.every((b: { at: number }, i: number) => b.at === h.from + i * 60_000), 'oldest first, a minute apart')
  const sum = (k: string): number => h.buckets.reduce((n: number, b: Record<string, number>) => n + b[k], 0)
  t.same({ hit: sum('hit'), miss: sum('miss'), refused: sum('refused'), error: sum('error'), generations: sum('generations') },
    { hit: 3, miss: 2, refused: 1, error: 0, generations: 2 })
  const timed = h.buckets.filter((b: { generationP50Ms: number | null }) => b.generationP50Ms !== null)
  t.ok(timed.length >= 1, 'the minutes with model calls have percentiles')
  for (const b of timed) t.ok(b.generationP95Ms >= b.generationP50Ms && b.generationP50Ms >= 0)
  t.match(h.note, /model calls/)

  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/history', headers: auth })).json().buckets.length, 60, '60 minutes by default')
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/history?minutes=0', headers: auth })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/history?minutes=1441', headers: auth })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/history' })).statusCode, 401, 'an admin route')
})

t.test('GET /api/narrative/audit: newest first, a page at a time, every admin call in it', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const calls = ['/api/narrative/stats', '/api/narrative/analytics?period=1d', '/api/narrative/history?minutes=1']
  for (const url of calls) t.equal((await app.inject({ method: 'GET', url, headers: auth })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/stats' })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url: '/api/narrative/cache?pattern=nothing-here*', headers: auth })).statusCode, 200)
  // Audit rows are written after each answer, without waiting.
  await waitUntil(async () => (await app.db.audit.recent(10)).length === 5, { timeoutMs: 5000, what: 'audit rows written' })

  const first = (await app.inject({ method: 'GET', url: '/api/narrative/audit?limit=2', headers: auth })).json()
  t.same(first.entries.map((e: { action: string }) => e.action), ['DELETE /api/narrative/cache', 'GET /api/narrative/stats'])
  t.match(first.entries[0], { actor: 'alice', outcome: 'allowed', status: 200 })
  t.match(first.entries[1], { actor: null, outcome: 'denied', status: 401 })
  t.equal(first.next, first.entries[1].id)
  const second = (await app.inject({ method: 'GET', url: `/api/narrative/audit?limit=2&before=${first.next as number}`, headers: auth })).json()
  t.same(second.entries.map((e: { action: string }) => e.action), ['GET /api/narrative/history', 'GET /api/narrative/analytics'])
  t.ok(second.entries[0].id < first.next)
  const third = (await app.inject({ method: 'GET', url: `/api/narrative/audit?limit=2&before=${second.next as number}`, headers: auth })).json()
  // The stats call, then the first audit call (written meanwhile, so it is newer: not on this page).
  t.same(third.entries.map((e: { action: string }) => e.action), ['GET /api/narrative/stats'])
  t.equal(third.next, null, 'the last page')
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/audit?limit=0', headers: auth })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/audit?before=x', headers: auth })).statusCode, 400)
})
