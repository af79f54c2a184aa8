import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import configPlugin from '../plugins/config.ts'
import dbPlugin, { type DbPluginOptions } from '../plugins/db.ts'
import metricsPlugin from '../plugins/metrics.ts'
import swaggerPlugin from '../plugins/swagger.ts'
import { loadConfig } from '../src/config.ts'
import { DatabaseUnavailableError, openPostgres, pgliteDir } from '../src/db/database.ts'
import { migrations } from '../src/db/migrations.ts'
import { uniqueDatabaseUrl, uniquePrefix } from './support/env.ts'
import { startPostgres } from './support/postgres-server.ts'
import { waitUntil } from './support/wait.ts'

interface Built { app: FastifyInstance, logs: Array<{ level: number, msg: string }>, readyMs: number }

/** The config and db plugins on a bare Fastify, its log lines collected. */
async function build (t: Test, env: Record<string, string>, opts: DbPluginOptions = {}): Promise<Built> {
  const logs: Array<{ level: number, msg: string }> = []
  const stream = new Writable({
    write (chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line))
      done()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(configPlugin, { config: loadConfig({ LOG_LEVEL: 'info', ...env }) })
  const started = Date.now()
  // Its declared dependency, metrics (the db plugin provides the analytics figures to it), and what metrics needs.
  await app.register(swaggerPlugin)
  await app.register(metricsPlugin)
  await app.register(dbPlugin, { retry: { minMs: 100, maxMs: 400 }, ...opts })
  await app.ready()
  return { app, logs, readyMs: Date.now() - started }
}

t.test('PostgreSQL down at start-up: the server starts, decorated; it migrates in the background once PostgreSQL is up', async t => {
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  const url = await pg.createDatabase('plugin')
  await pg.kill()

  const { app, logs, readyMs } = await build(t, { DATABASE_URL: url })
  t.ok(readyMs < 3000, `ready in ${readyMs} ms`)
  await app.db.firstAttempt
  t.ok(logs.some(l => l.level === 40 && /database not available/.test(l.msg)), 'a warning is logged')
  t.equal(await app.db.state(), 'down')
  t.equal(app.db.database.kind, 'postgres')
  const started = Date.now()
  await t.rejects(app.db.narratives.get('k'), DatabaseUnavailableError)
  t.ok(Date.now() - started < 100, 'queries reject at once while it is not open')
  t.doesNotThrow(() => app.db.buffer.record({ at: Date.now(), event: 'hit', key: 'k', systems: [] }))

  await pg.restart()
  await waitUntil(async () => await app.db.state() === 'up', { timeoutMs: 10_000, intervalMs: 100, what: 'the background retry to open and migrate' })
  t.ok(logs.some(l => l.msg === 'database migrated'), 'migrated in the background')
  const [row] = await app.db.database.query<{ n: number }>('SELECT count(*) AS n FROM schema_migrations')
  t.equal(row.n, migrations.length, 'every migration applied')

  const key = uniquePrefix('plugin')
  app.db.buffer.record({ at: Date.now(), event: 'miss', key, systems: ['Vega'], userId: 'u1' })
  await app.db.buffer.flush()
  t.same(await app.db.analytics.keysOfUser('u1'), [key], 'analytics flow through the decorated buffer')

  // Down again after start-up: state() says so within its ping bound.
  await pg.kill()
  const s = Date.now()
  t.equal(await app.db.state(), 'down')
  t.ok(Date.now() - s < 1500, 'state() is bounded')
  await pg.restart()
  await waitUntil(async () => await app.db.state() === 'up', { timeoutMs: 10_000, intervalMs: 100, what: 'the pool to reconnect' })
})

t.test('PostgreSQL frozen at start-up: ready at once, not hung; starting, then down, then up after the thaw', async t => {
  const pg = await startPostgres()
  t.teardown(async () => { pg.thaw(); await pg.stop() })
  const url = await pg.createDatabase('frozen')
  pg.freeze()
  const { app, logs } = await build(t, { DATABASE_URL: url }, { postgres: { connectionTimeoutMs: 1000 } })
  // Ready without waiting for the first attempt, which goes on (start-up never waits for the database).
  t.equal(await app.db.state(), 'starting', 'starting while the first attempt goes on')
  t.ok(logs.some(l => /database opening in the background/.test(l.msg)))
  await app.db.firstAttempt
  t.equal(await app.db.state(), 'down', 'down once it failed')
  pg.thaw()
  await waitUntil(async () => await app.db.state() === 'up', { timeoutMs: 10_000, intervalMs: 100, what: 'it to come up after the thaw' })
})

t.test('an injected database is migrated and used, and left open on close', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  const { app } = await build(t, {}, { database: db })
  t.equal(app.db.database.kind, 'postgres')
  await app.db.firstAttempt
  t.equal(await app.db.state(), 'up')
  t.equal(await app.db.narratives.count(), 0)
  await app.close()
  t.same(await db.query('SELECT 1 AS x'), [{ x: 1 }], 'still open')
})

t.test('no DATABASE_URL: embedded PGlite under DATA_DIR, closed (and unlocked) on close', async t => {
  const dataDir = await mkdtemp(join(tmpdir(), 'nc-db-plugin-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const { app, readyMs } = await build(t, { DATA_DIR: dataDir })
  t.comment(`ready with a new PGlite folder in ${readyMs} ms`)
  t.equal(app.db.database.kind, 'pglite')
  // a new folder takes seconds to open: start-up does not wait, it finishes in the background
  await waitUntil(async () => await app.db.state() === 'embedded', { timeoutMs: 30_000, intervalMs: 100, what: 'PGlite to be open and migrated' })
  t.ok(existsSync(`${pgliteDir(dataDir)}.lock`), 'the folder is locked by this process')
  app.db.buffer.record({ at: Date.now(), event: 'miss', key: 'k1', systems: ['Vega'], userId: 'u9', profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 50 } }, locale: 'en' })
  await app.db.buffer.flush()
  t.same((await app.db.analytics.topKeys(0, 10)).map(k => k.key), ['k1'])
  await app.close()
  t.notOk(existsSync(`${pgliteDir(dataDir)}.lock`), 'closed and unlocked')
})
