import t from 'tap'
import { DatabaseUnavailableError, openPostgres, type Database } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { NarrativesRepository } from '../src/db/narratives-repository.ts'
import { freePort } from './support/ports.ts'
import { startPostgres } from './support/postgres-server.ts'
import { waitUntil } from './support/wait.ts'
import { uniqueDatabaseUrl } from './support/env.ts'

/** How long `p` takes to settle, and how. */
async function timed (p: Promise<unknown>): Promise<{ ms: number, error: unknown }> {
  const started = Date.now()
  const error = await p.then(() => undefined, (err: unknown) => err ?? new Error('rejected'))
  return { ms: Date.now() - started, error }
}

t.test('nothing listening: openPostgres fails fast with DatabaseUnavailableError', async t => {
  const url = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`
  const { ms, error } = await timed(openPostgres(url))
  t.ok(error instanceof DatabaseUnavailableError, 'DatabaseUnavailableError')
  t.ok(ms < 3000, `failed in ${ms} ms`)
})

t.test('a stopped server: open fails fast; an open pool fails fast; after restart it works again', async t => {
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  const idleErrors: Error[] = []
  const db = await openPostgres(pg.url, { onError: err => idleErrors.push(err) })
  t.teardown(() => db.close())
  await Promise.all(Array.from({ length: 4 }, () => db.query('SELECT pg_sleep(0.05)'))) // a few idle connections

  await pg.kill()
  const open = await timed(openPostgres(pg.url))
  t.ok(open.error instanceof DatabaseUnavailableError, 'open rejects with DatabaseUnavailableError')
  t.ok(open.ms < 3000, `open failed in ${open.ms} ms`)
  for (let i = 0; i < 3; i++) {
    const q = await timed(db.query('SELECT 1'))
    t.ok(q.error, 'query rejects')
    t.ok(q.ms < 3000, `query failed in ${q.ms} ms`)
  }
  const tx = await timed(db.transaction(async tx => await tx.query('SELECT 1')))
  t.ok(tx.error && tx.ms < 3000, `transaction failed in ${tx.ms} ms`)
  await waitUntil(() => idleErrors.length > 0, { timeoutMs: 3000, what: 'the idle connections to report their error' })
  t.pass(`the idle connections' errors went to onError (${idleErrors.length}), the process did not crash`)

  await pg.restart()
  await waitUntil(async () => (await db.query<{ x: number }>('SELECT 1 AS x'))[0].x === 1, { timeoutMs: 5000, what: 'queries to work again' })
  await migrate(db)
  t.equal(await new NarrativesRepository(db).count(), 0, 'the same pool works after the restart')
})

t.test('a frozen server: queries and transactions fail within about the timeout, close does not hang; thawed: works again', async t => {
  const pg = await startPostgres()
  t.teardown(async () => { pg.thaw(); await pg.stop() })
  const statementTimeoutMs = 1000
  const opened: Database[] = []
  t.teardown(async () => { pg.thaw(); await Promise.all(opened.map(db => db.close())) })
  const db = await openPostgres(pg.url, { statementTimeoutMs, connectionTimeoutMs: 1000, max: 4 })
  opened.push(db)
  await migrate(db)
  await Promise.all(Array.from({ length: 4 }, () => db.query('SELECT pg_sleep(0.05)'))) // warm the pool: 4 open connections
  const spare = await openPostgres(pg.url, { statementTimeoutMs, connectionTimeoutMs: 1000 })
  opened.push(spare)

  pg.freeze()
  // More queries than connections: 4 wait on frozen sockets, the rest wait for a connection.
  const results = await Promise.all(Array.from({ length: 8 }, () => timed(db.query('SELECT 1'))))
  for (const r of results) {
    t.ok(r.error, 'rejected')
    t.ok(r.ms < statementTimeoutMs + 1500, `failed in ${r.ms} ms (timeout ${statementTimeoutMs} ms)`)
  }
  const tx = await timed(db.transaction(async tx => { await tx.query('SELECT 1'); await tx.query('SELECT 2') }))
  t.ok(tx.error, 'a transaction rejects')
  t.ok(tx.ms < statementTimeoutMs + 1500, `transaction failed in ${tx.ms} ms`)
  const repo = await timed(new NarrativesRepository(db).get('k'))
  t.ok(repo.error && repo.ms < statementTimeoutMs + 1500, `a repository read failed in ${repo.ms} ms`)
  const open = await timed(openPostgres(pg.url, { connectionTimeoutMs: 1000 }))
  t.ok(open.error instanceof DatabaseUnavailableError, 'opening against a frozen server rejects')
  t.ok(open.ms < 2500, `open failed in ${open.ms} ms`)
  const closing = await timed(spare.close())
  t.ok(closing.ms < 3000, `close of a pool with a connection to the frozen server took ${closing.ms} ms`)

  pg.thaw()
  await waitUntil(async () => (await db.query<{ x: number }>('SELECT 1 AS x'))[0].x === 1, { timeoutMs: 5000, what: 'queries to work again' })
  const narratives = new NarrativesRepository(db)
  t.equal(await narratives.count(), 0, 'after thaw, queries work')
  t.equal(await db.transaction(async tx => (await tx.query<{ n: number }>('SELECT 41 + 1 AS n'))[0].n), 42, 'after thaw, transactions work')
})

t.test('a slow statement is cancelled by the server after statement_timeout, and the connection stays usable', async t => {
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  const db = await openPostgres(pg.url, { statementTimeoutMs: 500, max: 1 })
  t.teardown(() => db.close())
  const slow = await timed(db.query('SELECT pg_sleep(5)'))
  t.match(String((slow.error as Error)?.message), /statement timeout/, 'cancelled by the server')
  t.ok(slow.ms < 1200, `in ${slow.ms} ms`)
  t.same(await db.query('SELECT 1 AS x'), [{ x: 1 }], 'the pool goes on')
  const tx = await timed(db.transaction(async tx => await tx.query('SELECT pg_sleep(0.8)'), { timeoutMs: 3000 }))
  t.equal(tx.error, undefined, 'a transaction may be given a longer timeout (migrations)')
  const failed = await timed(db.transaction(async tx => { await tx.query('SELECT 1/0') }))
  t.match(String((failed.error as Error)?.message), /division by zero/)
  t.same(await db.query('SELECT 2 AS x'), [{ x: 2 }], 'rolled back; the single connection is usable again')
})

t.test('idle connections are closed down to the pool\'s minimum, never below: a burst after a quiet spell finds some open', async t => {
  const url = await uniqueDatabaseUrl(t)
  const name = new URL(url).pathname.slice(1)
  const watcher = await openPostgres(url, { max: 1, min: 0 })
  t.teardown(() => watcher.close())
  const open = async (): Promise<number> => Number((await watcher.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'narrative-cache' AND pid <> pg_backend_pid()", [name]))[0].n)
  for (const [min, expected] of [[undefined, 2], [0, 0], [3, 3]] as const) {
    const db = await openPostgres(url, { idleTimeoutMs: 1000, ...(min === undefined ? {} : { min }) })
    await Promise.all(Array.from({ length: 6 }, async () => await db.query('SELECT pg_sleep(0.05)')))
    // Up to six (a slow machine may have closed one that finished first): more than are kept.
    const opened = await open()
    t.ok(opened > expected && opened <= 6, `six statements at once: ${opened} connections open, more than the ${expected} kept`)
    await waitUntil(async () => await open() <= expected, { timeoutMs: 5000, intervalMs: 50, what: 'idle connections closed' })
    await new Promise(resolve => setTimeout(resolve, 300))
    t.equal(await open(), expected, `min ${min ?? 'by default (2)'}: ${expected} kept open`)
    await db.close()
  }
})
