// Boot does not depend on how fast the database opens. The first start on a
// fresh embedded database failed twice under load: its migrations took 11 s,
// and the db plugin held the boot (up to 5 s, plus the rest of the app) against
// Fastify's 10 s plugin timeout. Here the database is held shut for as long as
// the test likes (well beyond any plugin timeout, without waiting for it): the
// app must be ready, answer narratives and say `database: starting` meanwhile,
// hold analytics instead of dropping them, then take the database on once open.
import t from 'tap'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { openPostgres, type Database } from '../src/db/database.ts'
import { bodyFor } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { waitUntil } from './support/wait.ts'

/** A real database whose every call waits until `open()`: a database that takes as long to open (and migrate) as we say. */
function heldShut (real: Database): { database: Database, open: () => void, calls: () => number } {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let calls = 0
  const held = async <T>(fn: () => Promise<T>): Promise<T> => { calls++; await gate; return await fn() }
  return {
    database: {
      kind: real.kind,
      query: async (text, params) => await held(() => real.query(text, params)),
      transaction: async (fn, opts) => await held(() => real.transaction(fn, opts)),
      ping: async () => await held(() => real.ping()),
      close: async () => {}
    },
    open: release,
    calls: () => calls
  }
}

t.test('a database that is slow to open: the app is ready at once, answers narratives, /ready says starting; the database joins when open', async t => {
  const real = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => real.close())
  const slow = heldShut(real)
  const config = loadConfig({ LOG_LEVEL: 'silent', DATA_DIR: '/nonexistent', GENERATION_RATE_LIMIT: '0' })
  // A plugin timeout far below the 5 s the db plugin used to hold the boot for.
  const fastify = Fastify({ ...serverOptions(config), pluginTimeout: 2000 })
  t.teardown(() => fastify.close())
  await fastify.register(fp(app), { config, db: { database: slow.database } })
  await fastify.ready()
  t.ok(slow.calls() > 0, 'the migrations have begun, and are held')

  const ready = await fastify.inject({ method: 'GET', url: '/ready' })
  t.equal(ready.statusCode, 200, '/ready: 200, narratives are served')
  t.match(ready.json(), { status: 'ready', database: 'starting' })

  const first = await fastify.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(first.statusCode, 200)
  t.equal(first.json().cache.status, 'miss', 'generated (the durable tier is skipped)')
  const again = await fastify.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(1) })
  t.equal(again.json().cache.status, 'hit')
  t.equal(fastify.durable.breaker.state, 'closed', 'a database still opening does not open the database breaker')

  // Analytics wait in the buffer (longer than its 1 s flush interval), neither tried nor dropped.
  await new Promise(resolve => setTimeout(resolve, 1200))
  const held = fastify.db.buffer.counters
  t.equal(fastify.db.buffer.buffered, held.recorded, `all ${held.recorded} events held`)
  t.ok(held.recorded >= 3, 'a miss, its generation and a hit')
  t.equal(held.failedWrites, 0, 'no write was tried')
  t.equal(held.dropped, 0, 'none dropped')
  t.equal((await fastify.inject({ method: 'GET', url: '/ready' })).json().database, 'starting', 'still starting')

  slow.open()
  await waitUntil(async () => (await fastify.inject({ method: 'GET', url: '/ready' })).json().database === 'up', { timeoutMs: 10_000, intervalMs: 50, what: 'the database to be open and migrated' })
  await waitUntil(() => fastify.db.buffer.buffered === 0, { timeoutMs: 5000, what: 'the held analytics to be written' })
  t.equal(fastify.db.buffer.counters.written, held.recorded, 'every held event written once the database is open')
  const [row] = await real.query<{ n: number }>('SELECT coalesce(sum(count), 0)::int AS n FROM analytics_events')
  t.ok(row.n >= held.recorded, `in the table (${row.n})`)

  // From now on the durable tier is used: a new narrative is written to it.
  await fastify.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(2) })
  await waitUntil(async () => (await real.query<{ n: number }>('SELECT count(*)::int AS n FROM narratives'))[0].n >= 1, { timeoutMs: 5000, what: 'a durable write' })
})

t.test('the analytics buffer holds events while its database is not writable, without trying or spinning, then writes them', async t => {
  const { AnalyticsBuffer } = await import('../src/analytics/buffer.ts')
  let writable = false
  const batches: number[] = []
  const buffer = new AnalyticsBuffer({ repository: { insertBatch: async rows => { batches.push(rows.length) } }, flushIntervalMs: 20, batchSize: 2, maxBuffered: 4, writable: () => writable })
  t.teardown(() => buffer.close())
  for (let i = 0; i < 6; i++) buffer.record({ at: Date.now(), event: 'generation', key: `k${i}`, systems: [] })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same(batches, [], 'nothing tried while not writable, though full batches were queued')
  t.match(buffer.counters, { recorded: 6, dropped: 2, failedWrites: 0 }, 'bounded: past maxBuffered (4) events are dropped and counted')
  writable = true
  await waitUntil(() => buffer.buffered === 0, { timeoutMs: 2000, what: 'the held events to be written' })
  t.same(batches, [2, 2])
  t.equal(buffer.counters.written, 4)
})
