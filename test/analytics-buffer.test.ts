import t, { type Test } from 'tap'
import { AnalyticsBuffer, type AnalyticsBufferCounters } from '../src/analytics/buffer.ts'
import type { AnalyticsEvent } from '../src/analytics/event.ts'
import { AnalyticsRepository } from '../src/db/analytics-repository.ts'
import { openPostgres, type Database } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { uniqueDatabaseUrl, uniquePrefix } from './support/env.ts'
import { startPostgres } from './support/postgres-server.ts'
import { sleep, waitUntil } from './support/wait.ts'

/** The i-th event under a key prefix; each i has a key of its own, so none coalesce (see the coalescing tests for that). */
function event (key: string, i: number, extra: Partial<AnalyticsEvent> = {}): AnalyticsEvent {
  return { at: Date.now(), event: i % 3 === 0 ? 'miss' : 'hit', key: `${key}/${i}`, systems: ['Vega', 'Sirius'], userId: `u${i % 7}`, ...extra }
}

async function rowsFor (db: Database, key: string): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*) AS n FROM analytics_events WHERE key LIKE $1', [`${key}%`])
  return row.n
}

/** recorded = written + dropped + discarded + buffered */
function balanced (c: AnalyticsBufferCounters, buffered: number): boolean {
  return c.recorded === c.written + c.dropped + c.discarded + buffered
}

/** The real repository, with the sizes of the batches it was given noted (the writes go to PostgreSQL). */
function observed (repo: AnalyticsRepository): { repo: AnalyticsRepository, batches: number[] } {
  const batches: number[] = []
  const insertBatch = repo.insertBatch.bind(repo)
  repo.insertBatch = async (events) => {
    batches.push(events.length)
    return await insertBatch(events)
  }
  return { repo, batches }
}

t.test('events reach PostgreSQL in batches, within about a second', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const { repo, batches } = observed(new AnalyticsRepository(db))
  const buffer = new AnalyticsBuffer({ repository: repo, flushIntervalMs: 1000, batchSize: 500 })
  t.teardown(() => buffer.close())

  const key = uniquePrefix('few')
  const started = Date.now()
  for (let i = 0; i < 10; i++) buffer.record(event(key, i))
  t.equal(await rowsFor(db, key), 0, 'not written one by one')
  await waitUntil(async () => await rowsFor(db, key) === 10, { timeoutMs: 2000, intervalMs: 20, what: 'the timer to write them' })
  const ms = Date.now() - started
  t.ok(ms <= 1300, `a small batch written by the timer after ${ms} ms`)
  t.same(batches, [10], 'in one INSERT')

  batches.length = 0
  const many = uniquePrefix('many')
  const t0 = Date.now()
  for (let i = 0; i < 1200; i++) buffer.record(event(many, i))
  await waitUntil(async () => await rowsFor(db, many) >= 1000, { timeoutMs: 2000, intervalMs: 10, what: 'two full batches' })
  t.ok(Date.now() - t0 < 500, `full batches go at once, without waiting for the timer (${Date.now() - t0} ms)`)
  await waitUntil(async () => await rowsFor(db, many) === 1200, { timeoutMs: 2000, intervalMs: 20, what: 'the rest' })
  t.same(batches, [500, 500, 200], 'batches of at most batchSize')
  // The rows are visible a moment before the buffer has read PostgreSQL's answer: let the write in flight end.
  await buffer.flush()
  t.same(buffer.counters, { recorded: 1210, written: 1210, dropped: 0, discarded: 0, failedWrites: 0 })
  t.equal(buffer.buffered, 0)
  const [index] = await db.query<{ n: number, users: number }>("SELECT count(*) AS n, count(DISTINCT user_id) AS users FROM user_keys WHERE key LIKE $1 || '/%'", [many])
  t.same(index, { n: 1200, users: 7 }, 'the per-user index came along')
})

t.test('a failed batch is retried once, then dropped and counted; the buffer goes on', async t => {
  // A real, fresh database without the tables yet: every insert fails until it is migrated.
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  const { repo, batches } = observed(new AnalyticsRepository(db))
  const buffer = new AnalyticsBuffer({ repository: repo, flushIntervalMs: 100, batchSize: 50 })
  t.teardown(() => buffer.close())
  const key = uniquePrefix('retry')
  for (let i = 0; i < 30; i++) buffer.record(event(key, i))
  await waitUntil(() => buffer.counters.failedWrites >= 2, { timeoutMs: 3000, what: 'the write and its retry to fail' })
  await sleep(350) // a few more ticks: no third attempt at that batch
  t.same(batches, [30, 30], 'written once, retried once, no more')
  t.same(buffer.counters, { recorded: 30, written: 0, dropped: 30, discarded: 0, failedWrites: 2 })
  t.equal(buffer.buffered, 0, 'nothing piles up')

  await migrate(db)
  for (let i = 0; i < 20; i++) buffer.record(event(key, i))
  await waitUntil(async () => await rowsFor(db, key) === 20, { timeoutMs: 3000, what: 'new events to be written' })
  await buffer.flush() // the write that made them visible has ended
  const c = buffer.counters
  t.equal(c.written, 20)
  t.ok(balanced(c, buffer.buffered), 'recorded = written + dropped + discarded + buffered')
})

t.test('while writes fail, a full queue waits for the timer: the database is tried once a tick, the backlog is not burnt in a loop', async t => {
  // A real, fresh database without the tables: every insert fails, at once.
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  const { repo, batches } = observed(new AnalyticsRepository(db))
  const buffer = new AnalyticsBuffer({ repository: repo, flushIntervalMs: 400, batchSize: 50, maxBuffered: 5000 })
  t.teardown(() => buffer.close())
  const key = uniquePrefix('backoff')
  for (let i = 0; i < 2000; i++) buffer.record(event(key, i))
  await waitUntil(() => buffer.counters.failedWrites >= 1, { timeoutMs: 3000, what: 'the first write to fail' })
  // Requests go on recording, each filling the queue past a batch, while the database refuses.
  const until = Date.now() + 900
  let i = 2000
  while (Date.now() < until) {
    for (let j = 0; j < 5; j++) buffer.record(event(key, i++))
    await sleep(5)
  }
  const c = buffer.counters
  // Two or three ticks in 900 ms, each one write (a drain stops at its first failure), plus the first write.
  t.ok(batches.length <= 5, `${batches.length} writes tried in about 900 ms`)
  t.ok(c.dropped <= 3 * 50, `the backlog is kept for when the database is back: ${c.dropped} dropped of ${c.recorded}`)
  t.ok(balanced(c, buffer.buffered), 'recorded = written + dropped + discarded + buffered')
  await migrate(db)
  await waitUntil(() => buffer.buffered === 0, { timeoutMs: 5000, what: 'the backlog to drain once the table exists' })
  t.ok(await rowsFor(db, key) >= c.recorded - c.dropped, 'what was held is written')
})

t.test('PostgreSQL killed: the buffer stays bounded, record stays fast; restarted: events are written again', async t => {
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  const db = await openPostgres(await pg.createDatabase('analytics'), { statementTimeoutMs: 1000, connectionTimeoutMs: 1000 })
  t.teardown(() => db.close())
  await migrate(db)
  const buffer = new AnalyticsBuffer({ repository: new AnalyticsRepository(db), flushIntervalMs: 200 })
  t.teardown(() => buffer.close())
  t.equal(buffer.maxBuffered, 10_000, 'the default bound')
  const before = uniquePrefix('before')
  for (let i = 0; i < 100; i++) buffer.record(event(before, i))
  await waitUntil(async () => await rowsFor(db, before) === 100, { timeoutMs: 3000, what: 'the first events' })

  await pg.kill()
  const during = uniquePrefix('during')
  let maxSeen = 0
  let returnedPromise = false
  const recordedBefore = buffer.counters.recorded
  const started = process.hrtime.bigint()
  for (let i = 0; i < 20_000; i++) {
    if ((buffer.record(event(during, i)) as unknown) instanceof Promise) returnedPromise = true
    if (buffer.bufferedRows > maxSeen) maxSeen = buffer.bufferedRows
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  // Never waits on the dead database: every call is done, and counted, within this one
  // synchronous loop (how long it takes is the machine's business, not a test's).
  t.notOk(returnedPromise, 'record() never hands back anything to wait for')
  t.equal(buffer.counters.recorded - recordedBefore, 20_000, `the 20,000 calls were all done and counted in one go (${ms.toFixed(1)} ms here)`)
  t.ok(maxSeen <= 10_000, `never more than maxBuffered rows held (${maxSeen})`)
  let c = buffer.counters
  t.ok(c.dropped >= 10_000, `the overflow is dropped and counted (${c.dropped})`)
  t.ok(balanced(c, buffer.buffered), 'recorded = written + dropped + discarded + buffered')

  // Ticks go on failing while it is down: still bounded, still balanced.
  await waitUntil(() => buffer.counters.failedWrites >= 3, { timeoutMs: 5000, what: 'several failed writes' })
  for (let i = 0; i < 5000; i++) {
    buffer.record(event(during, i))
    if (buffer.bufferedRows > maxSeen) maxSeen = buffer.bufferedRows
  }
  t.ok(maxSeen <= 10_000, `still bounded (${maxSeen})`)
  c = buffer.counters
  t.ok(balanced(c, buffer.buffered), 'still balanced')
  t.comment(`while down: ${JSON.stringify({ ...c, buffered: buffer.buffered })}`)

  await pg.restart()
  // What was held while it was down drains first (the pool reconnects on its own)...
  await waitUntil(() => buffer.buffered === 0, { timeoutMs: 10_000, what: 'the backlog to drain' })
  t.ok(await rowsFor(db, during) > 0, `the backlog held while down was written after the restart (${await rowsFor(db, during)} events)`)
  // ...and new events are written again.
  const after = uniquePrefix('after')
  for (let i = 0; i < 300; i++) buffer.record(event(after, i))
  await waitUntil(async () => await rowsFor(db, after) === 300, { timeoutMs: 5000, intervalMs: 50, what: 'events recorded after the restart to be written' })
  await waitUntil(() => buffer.buffered === 0, { timeoutMs: 5000, what: 'the buffer to drain' })
  c = buffer.counters
  t.ok(balanced(c, 0), `balanced after recovery: ${JSON.stringify(c)}`)
  const written = await db.query<{ n: number }>('SELECT sum(count) AS n FROM analytics_events')
  t.equal(written[0].n, c.written, 'every event counted as written is in the table')
})

t.test('close writes what is left; with the server frozen it gives up after closeTimeoutMs and counts the loss', async t => {
  const pg = await startPostgres()
  t.teardown(async () => { pg.thaw(); await pg.stop() })
  const db = await openPostgres(await pg.createDatabase('closing'), { statementTimeoutMs: 1000, connectionTimeoutMs: 1000 })
  t.teardown(() => db.close())
  await migrate(db)

  const first = new AnalyticsBuffer({ repository: new AnalyticsRepository(db), flushIntervalMs: 60_000 })
  const key = uniquePrefix('close')
  for (let i = 0; i < 120; i++) first.record(event(key, i))
  await first.close()
  t.equal(await rowsFor(db, key), 120, 'close flushed them')
  first.record(event(key, 0))
  t.same(first.counters, { recorded: 121, written: 120, dropped: 1, discarded: 0, failedWrites: 0 }, 'recorded after close: dropped')
  await first.close()

  const second = new AnalyticsBuffer({ repository: new AnalyticsRepository(db), flushIntervalMs: 60_000, closeTimeoutMs: 1500 })
  pg.freeze()
  for (let i = 0; i < 700; i++) second.record(event(key, i))
  await sleep(50) // the first full batch is on its way to the frozen server
  const started = Date.now()
  await second.close()
  const ms = Date.now() - started
  t.ok(ms >= 1400 && ms < 2000, `close gave up after ${ms} ms (closeTimeoutMs 1500)`)
  await waitUntil(() => second.buffered === 0, { timeoutMs: 3000, what: 'the write in flight to end' })
  const c = second.counters
  t.ok(balanced(c, 0), `nothing unaccounted for: ${JSON.stringify(c)}`)
  t.ok(c.dropped > 0, 'the loss is counted')
})

t.test('discardUser removes a user\'s buffered events before they are written', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const buffer = new AnalyticsBuffer({ repository: new AnalyticsRepository(db), flushIntervalMs: 60_000 })
  t.teardown(() => buffer.close())
  const key = uniquePrefix('gdpr')
  for (let i = 0; i < 70; i++) buffer.record(event(key, i)) // users u0..u6, 10 each
  t.equal(await buffer.discardUser('u3'), 10)
  await buffer.flush()
  const [row] = await db.query<{ n: number, u3: number }>(
    "SELECT count(*) AS n, count(*) FILTER (WHERE user_id = 'u3') AS u3 FROM analytics_events WHERE key LIKE $1 || '/%'", [key])
  t.same(row, { n: 60, u3: 0 })
  t.same(buffer.counters, { recorded: 70, written: 60, dropped: 0, discarded: 10, failedWrites: 0 })
})

t.test('record never throws, and refuses malformed events', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const buffer = new AnalyticsBuffer({ repository: new AnalyticsRepository(db), maxBuffered: 5, batchSize: 5, flushIntervalMs: 60_000 })
  t.teardown(() => buffer.close())
  const bad = [null, undefined, 42, {}, { at: 1, event: 'nope', key: 'k', systems: [] }, { at: Number.NaN, event: 'hit', key: 'k', systems: [] }, { at: 1, event: 'hit', key: '', systems: [] }]
  for (const b of bad) t.doesNotThrow(() => buffer.record(b as unknown as AnalyticsEvent))
  t.same(buffer.counters, { recorded: bad.length, written: 0, dropped: bad.length, discarded: 0, failedWrites: 0 })
  t.equal(buffer.buffered, 0)
  t.throws(() => new AnalyticsBuffer({ repository: new AnalyticsRepository(db), batchSize: 0 }), /batchSize must be a positive whole number/)
  t.throws(() => new AnalyticsBuffer({ repository: new AnalyticsRepository(db), batchSize: 10, maxBuffered: 5 }), /must not exceed maxBuffered/)
})

t.test('identical requests coalesce into one row with a count; model calls never do; the summary counts requests', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const repository = new AnalyticsRepository(db)
  const { repo, batches } = observed(repository)
  const buffer = new AnalyticsBuffer({ repository: repo, flushIntervalMs: 60_000, maxBuffered: 10, batchSize: 10 })
  t.teardown(() => buffer.close())
  const key = uniquePrefix('hot')
  const since = Date.now()
  const given = { at: Date.now(), event: 'hit' as const, key, systems: ['Vega'], userId: 'alice' }
  for (let i = 0; i < 5000; i++) buffer.record(given)
  t.same(given, { at: given.at, event: 'hit', key, systems: ['Vega'], userId: 'alice' }, 'the caller\'s event is not changed')
  for (let i = 0; i < 300; i++) buffer.record({ ...given, userId: 'bob' })
  for (let i = 0; i < 40; i++) buffer.record({ ...given, event: 'miss', userId: null })
  for (let i = 0; i < 3; i++) buffer.record({ at: Date.now(), event: 'generation', key, systems: ['Vega'], durationMs: 900 + i, promptTokens: 10, completionTokens: 20, model: 'gpt-4o' })
  t.equal(buffer.bufferedRows, 6, '5,343 events held in 6 rows: 3 coalesced groups and 3 model calls')
  t.equal(buffer.buffered, 5343, 'buffered counts events')
  await buffer.flush()
  t.same(batches, [6], 'one INSERT of 6 rows')
  const rows = await db.query<{ event: string, user_id: string | null, count: number }>(
    'SELECT event, user_id, count FROM analytics_events WHERE key = $1 ORDER BY event, user_id NULLS LAST, duration_ms', [key])
  t.same(rows, [
    { event: 'generation', user_id: null, count: 1 },
    { event: 'generation', user_id: null, count: 1 },
    { event: 'generation', user_id: null, count: 1 },
    { event: 'hit', user_id: 'alice', count: 5000 },
    { event: 'hit', user_id: 'bob', count: 300 },
    { event: 'miss', user_id: null, count: 40 }
  ])
  const summary = await repository.summary(since)
  t.same({ total: summary.totalRequests, hits: summary.cacheHits, misses: summary.cacheMisses, generations: summary.generations, avg: summary.avgGenerationTimeMs },
    { total: 5340, hits: 5300, misses: 40, generations: 3, avg: 901 }, 'the summary counts requests, not rows')
  t.same((await repository.topKeys(since, 5)).map(k => [k.key, k.count]), [], 'no requested profile was given, so no pre-warm candidate')
  t.same(await repository.topSystems(since, 5), [{ system: 'Vega', count: 5340 }])
  t.same(buffer.counters, { recorded: 5343, written: 5343, dropped: 0, discarded: 0, failedWrites: 0 })

  // maxBuffered bounds rows: identical events still fit when it is full, new ones are dropped.
  for (let i = 0; i < 10; i++) buffer.record({ ...given, key: `${key}/${i}` })
  for (let i = 0; i < 1000; i++) buffer.record({ ...given, key: `${key}/0` })
  buffer.record({ ...given, key: `${key}/new` })
  t.equal(buffer.bufferedRows, 10)
  t.equal(buffer.buffered, 1010)
  t.equal(buffer.counters.dropped, 1, 'only the event that needed an 11th row was dropped')
  t.equal(await buffer.discardUser('alice'), 1010, 'discardUser removes every event a coalesced row stands for')
  t.ok(balanced(buffer.counters, buffer.buffered), 'recorded = written + dropped + discarded + buffered')
})

/**
 * A buffer writing to a real database, each write held at a gate until the
 * test releases it; the counts of each batch's rows are noted as it starts.
 */
async function gatedBuffer (t: Test, name: string) {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  const repository = new AnalyticsRepository(db)
  const counts: number[][] = []
  const insertBatch = repository.insertBatch.bind(repository)
  let open!: () => void
  let gate = new Promise<void>(resolve => { open = resolve })
  repository.insertBatch = async (events) => {
    counts.push(events.map(e => e.count ?? 1))
    await gate
    return await insertBatch(events)
  }
  const buffer = new AnalyticsBuffer({ repository, flushIntervalMs: 60_000 })
  t.teardown(() => buffer.close())
  const key = uniquePrefix(name)
  return {
    buffer,
    counts,
    hit: { at: Date.now(), event: 'hit' as const, key, systems: ['Vega'] },
    /** Lets the writes held at the gate go on. */
    release: () => { open() },
    /** Holds the writes from now on at a new gate. */
    closeGate: () => { gate = new Promise<void>(resolve => { open = resolve }) },
    written: async () => (await db.query<{ rows: number, requests: number }>('SELECT count(*) AS rows, sum(count) AS requests FROM analytics_events WHERE key = $1', [key]))[0]
  }
}

t.test('an event recorded while its row is being written starts a new row: what is in flight is never changed', async t => {
  const { buffer, counts, hit, release, written } = await gatedBuffer(t, 'inflight')
  for (let i = 0; i < 3; i++) buffer.record(hit)
  const first = buffer.flush()
  for (let i = 0; i < 4; i++) buffer.record(hit)
  release()
  await first
  await buffer.flush()
  t.same(counts, [[3], [4]], 'the row in flight kept its 3; the next 4 went in a new row')
  t.same(await written(), { rows: 2, requests: 7 })
})

t.test('a drain writes the rows queued when it began: a hot key\'s hits recorded meanwhile wait and coalesce, however long the writes take', async t => {
  const { buffer, counts, hit, release, closeGate, written } = await gatedBuffer(t, 'drain')
  for (let i = 0; i < 3; i++) buffer.record(hit)
  const first = buffer.flush()
  // A slow write: hits keep coming while it lasts.
  for (let i = 0; i < 400; i++) {
    buffer.record(hit)
    if (i % 100 === 0) await sleep(5)
  }
  release()
  await first
  t.same(counts, [[3]], 'the drain wrote the one row it began with, and stopped')
  t.equal(buffer.bufferedRows, 1, 'the 400 hits recorded meanwhile wait in one row')
  t.equal(buffer.buffered, 400)

  // A flush asked for while a drain is in flight also writes what was queued after that drain began.
  closeGate()
  const third = buffer.flush()
  for (let i = 0; i < 5; i++) buffer.record(hit)
  const fourth = buffer.flush()
  release()
  await fourth
  t.same(counts, [[3], [400], [5]], 'then the 400 in one row, then the 5 recorded during that write')
  await third
  t.equal(buffer.buffered, 0)
  t.same(await written(), { rows: 3, requests: 408 })
})
