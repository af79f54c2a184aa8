import t, { type Test } from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseUnavailableError, openPglite, openPostgres, type Database } from '../src/db/database.ts'
import { migrate, migrations, MigrationError, type Migration } from '../src/db/migrations.ts'
import { uniqueDatabaseUrl } from './support/env.ts'

const TABLES = ['analytics_events', 'api_key_spend', 'api_keys', 'audit_log', 'build_claims', 'chat_entries', 'narratives', 'requested_profiles', 'schema_migrations', 'shared_tenants', 'user_keys']

async function tables (db: Database): Promise<string[]> {
  const rows = await db.query<{ name: string }>(
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
  return rows.map(r => r.name)
}

async function indexes (db: Database, table: string): Promise<string[]> {
  const rows = await db.query<{ def: string }>('SELECT indexdef AS def FROM pg_indexes WHERE tablename = $1 ORDER BY 1', [table])
  return rows.map(r => r.def)
}

const ALL = migrations.map(m => m.version)
const LATEST = ALL[ALL.length - 1]
const extra: Migration = { version: LATEST + 1, name: 'a later migration', sql: 'CREATE TABLE later_table (id int); INSERT INTO later_table VALUES (1), (2)' }

/** The same checks on either engine. */
async function migrationSuite (t: Test, open: () => Promise<Database>): Promise<void> {
  t.test('first run creates every table and index, records every version', async t => {
    const db = await open()
    const result = await migrate(db)
    t.same(result, { applied: ALL, current: LATEST })
    t.same(await tables(db), TABLES)
    const eventIndexes = (await indexes(db, 'analytics_events')).join('\n')
    t.match(eventIndexes, /\(at\)/, 'index on analytics_events.at')
    t.match(eventIndexes, /\(user_id\)/, 'index on analytics_events.user_id')
    t.match((await indexes(db, 'user_keys')).join('\n'), /\(user_id, key\)/, 'user_keys primary key (user_id, key)')
    const persistence = await db.query<{ relname: string, relpersistence: string }>("SELECT relname, relpersistence FROM pg_class WHERE relname IN ('build_claims', 'narratives') ORDER BY 1")
    t.same(persistence.map(r => [r.relname, r.relpersistence]), [['build_claims', 'u'], ['narratives', 'p']], 'build claims are written without WAL (unlogged); narratives with it')
    const rows = await db.query<{ version: number, name: string, applied_at: number }>('SELECT version, name, applied_at FROM schema_migrations')
    t.same(rows.map(r => [r.version, r.name]), migrations.map(m => [m.version, m.name]))
    t.ok(Math.abs(rows[0].applied_at - Date.now()) < 60_000, 'applied_at is a ms timestamp')
  })

  t.test('a second run applies nothing and changes nothing', async t => {
    const db = await open()
    await migrate(db)
    await db.query("INSERT INTO audit_log (at, action, ip, outcome, status) VALUES (1, 'GET /x', '127.0.0.1', 'allowed', 200)")
    t.same(await migrate(db), { applied: [], current: LATEST })
    t.same(await migrate(db), { applied: [], current: LATEST })
    t.equal((await db.query('SELECT 1 FROM schema_migrations')).length, migrations.length)
    t.equal((await db.query('SELECT 1 FROM audit_log')).length, 1, 'data kept')
  })

  t.test('a new migration is applied alone, once', async t => {
    const db = await open()
    await migrate(db)
    t.same(await migrate(db, { migrations: [...migrations, extra] }), { applied: [extra.version], current: extra.version })
    t.same(await migrate(db, { migrations: [...migrations, extra] }), { applied: [], current: extra.version })
    t.equal((await db.query('SELECT * FROM later_table')).length, 2, 'a multi-statement migration ran whole')
  })

  t.test('a failing migration rolls back the whole run', async t => {
    const db = await open()
    await migrate(db)
    const bad: Migration[] = [...migrations, extra, { version: extra.version + 1, name: 'broken', sql: 'CREATE TABLE ok_one (id int); SELECT * FROM no_such_table' }]
    const err = await migrate(db, { migrations: bad }).then(() => null, (e: unknown) => e)
    t.ok(err instanceof MigrationError, 'a MigrationError')
    t.match((err as Error).message, new RegExp(`migration ${extra.version + 1} \\(broken\\) failed: .*no_such_table`))
    const names = await tables(db)
    t.notOk(names.includes('later_table'), 'the migration before it in the same run rolled back')
    t.notOk(names.includes('ok_one'), 'the first statement of the failed migration rolled back')
    t.same((await db.query<{ version: number }>('SELECT version FROM schema_migrations')).map(r => r.version), ALL)
  })

  t.test('out-of-order migration lists are refused before touching the database', async t => {
    const db = await open()
    await t.rejects(migrate(db, { migrations: [extra, migrations[0]] }), MigrationError)
    await t.rejects(migrate(db, { migrations: [migrations[0], { ...extra, version: migrations[0].version }] }), MigrationError)
  })
}

t.test('PostgreSQL', async t => {
  const opened: Database[] = []
  t.teardown(async () => { await Promise.all(opened.map(db => db.close())) })
  const open = async (): Promise<Database> => {
    const db = await openPostgres(await uniqueDatabaseUrl(t))
    opened.push(db)
    return db
  }
  await migrationSuite(t, open)

  t.test('instances starting at once: one applies, the others wait on the lock and find nothing to do', async t => {
    for (let round = 0; round < 3; round++) {
      const url = await uniqueDatabaseUrl(t)
      // separate pools: separate "instances"
      const instances = await Promise.all(Array.from({ length: 4 }, () => openPostgres(url)))
      opened.push(...instances)
      const results = await Promise.all(instances.map(db => migrate(db)))
      t.same(results.map(r => r.applied).sort(), [[], [], [], ALL], `round ${round}: exactly one instance applied the migrations`)
      t.ok(results.every(r => r.current === LATEST))
      t.equal((await instances[0].query('SELECT 1 FROM schema_migrations')).length, migrations.length)
      t.same(await tables(instances[0]), TABLES)
    }
  })
})

t.test('PGlite', async t => {
  const parent = await mkdtemp(join(tmpdir(), 'nc-pglite-mig-'))
  const dir = join(parent, 'nested', 'pglite')
  t.teardown(() => rm(parent, { recursive: true, force: true }))

  // A lock left by a process that is gone is taken over.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid ?? 999_999
  mkdirSync(join(parent, 'nested'), { recursive: true })
  writeFileSync(`${dir}.lock`, `${dead}\n`)

  const started = Date.now()
  const db = await openPglite(dir) // the one slow open of this file: the folder does not exist yet
  const openMs = Date.now() - started
  t.comment(`PGlite first open of a new folder: ${openMs} ms`)
  t.ok(existsSync(dir), 'the folder was created')
  t.equal(readFileSync(`${dir}.lock`, 'utf8').trim(), String(process.pid), 'the stale lock was taken over')

  // Every subtest reuses the one PGlite: start each from an empty schema.
  const open = async (): Promise<Database> => {
    await db.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public')
    return db
  }
  await migrationSuite(t, open)

  t.test('opening the same folder again in this process shares the instance', async t => {
    const again = await openPglite(dir)
    t.equal(again.kind, 'pglite')
    t.same(await again.query<{ x: number }>('SELECT 1 AS x'), [{ x: 1 }])
    await again.close()
    t.same(await db.query<{ x: number }>('SELECT 1 AS x'), [{ x: 1 }], 'closing one user leaves the instance open for the others')
  })

  t.test('another live process holding the folder is refused, not shared', async t => {
    const other = join(parent, 'other')
    writeFileSync(`${other}.lock`, `${process.ppid}\n`)
    await t.rejects(openPglite(other), DatabaseUnavailableError)
  })

  t.test('persisted: closed and reopened, the schema and data are there', async t => {
    await open()
    await migrate(db)
    await db.query("INSERT INTO audit_log (at, action, ip, outcome, status) VALUES (1, 'GET /x', '127.0.0.1', 'allowed', 200)")
    await db.close()
    t.notOk(existsSync(`${dir}.lock`), 'close released the lock')
    const started = Date.now()
    const reopened = await openPglite(dir)
    t.comment(`PGlite reopen of an existing folder: ${Date.now() - started} ms`)
    t.teardown(() => reopened.close())
    t.same(await migrate(reopened), { applied: [], current: LATEST })
    t.equal((await reopened.query('SELECT 1 FROM audit_log')).length, 1)
  })
})
