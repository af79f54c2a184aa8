// Where tests get their Redis / PostgreSQL from.
//
// Under `tsx test/support/with-servers.ts tap` one server of each kind is
// shared by every test file (TEST_REDIS_URL / TEST_DATABASE_URL). When a test
// file is run alone (`tap test/x.test.ts`) those variables are absent and we
// start a private server instead, so both ways work unchanged.
// Tests that share a server must isolate themselves: uniquePrefix() for Redis
// keys, uniqueDatabaseUrl() for PostgreSQL.
import { randomBytes } from 'node:crypto'
import { psql, startPostgres } from './postgres-server.ts'
import { startRedis } from './redis-server.ts'

/** The part of tap's Test we need; keeps this file independent of tap's types. */
export interface Teardownable {
  teardown(fn: () => unknown): void
}

type Stoppable = { url: string, stop(): Promise<void> }

// Without `t`: one private server per process, killed by the reaper at exit.
// With `t`: a server per test object, stopped by t.teardown.
const perProcess = new Map<string, Promise<Stoppable>>()
const perTest = new WeakMap<Teardownable, Map<string, Promise<Stoppable>>>()

function privateServer (kind: string, t: Teardownable | undefined, start: () => Promise<Stoppable>): Promise<string> {
  let cache = perProcess
  if (t) {
    cache = perTest.get(t) ?? new Map()
    perTest.set(t, cache)
  }
  let p = cache.get(kind)
  if (!p) {
    p = start()
    cache.set(kind, p)
    p.catch(() => cache.delete(kind)) // let a later call retry
    if (t) {
      const started = p
      t.teardown(async () => { await (await started.catch(() => undefined))?.stop() })
    }
  }
  return p.then(s => s.url)
}

/** TEST_REDIS_URL, or the URL of a private redis-server. */
export function sharedRedisUrl (t?: Teardownable): Promise<string> {
  const url = process.env.TEST_REDIS_URL
  if (url) return Promise.resolve(url)
  return privateServer('redis', t, () => startRedis())
}

/** TEST_DATABASE_URL, or the URL of a private PostgreSQL. */
export function sharedDatabaseUrl (t?: Teardownable): Promise<string> {
  const url = process.env.TEST_DATABASE_URL
  if (url) return Promise.resolve(url)
  return privateServer('postgres', t, () => startPostgres())
}

/**
 * A fresh, empty database on the shared PostgreSQL (CREATE DATABASE is ~50 ms
 * on a fresh cluster). Dropped on t.teardown when `t` is given.
 */
export async function uniqueDatabaseUrl (t?: Teardownable): Promise<string> {
  const base = new URL(await sharedDatabaseUrl(t))
  const name = uniquePrefix('db')
  await psql(base.href, `CREATE DATABASE "${name}"`)
  if (t) {
    t.teardown(() => psql(base.href, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {}))
  }
  base.pathname = '/' + name
  return base.href
}

/**
 * A short key prefix, unique across processes: "t" + up to 6 letters/digits
 * of `name` (to recognise it in redis-cli MONITOR) + 6 random base-36 chars.
 * Only [a-z0-9], so it is safe in any key or identifier.
 */
export function uniquePrefix (name = ''): string {
  const tag = name.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 6)
  let rand = ''
  for (const b of randomBytes(6)) rand += (b % 36).toString(36)
  return `t${tag}${rand}`
}
