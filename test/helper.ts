import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions, type AppOptions } from '../src/app.ts'
import { loadConfig, type Config } from '../src/config.ts'
import { settledWithin } from '../src/timeout.ts'
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai.ts'
import { sharedRedisUrl, uniqueDatabaseUrl, uniquePrefix, type Teardownable } from './support/env.ts'

export interface BuildOptions extends Omit<AppOptions, 'config'> {
  /** Environment variables on top of the test defaults. */
  env?: Record<string, string | undefined>
  /** Start listening on a free loopback port (for real HTTP clients). */
  listen?: boolean
  /** false: return as soon as the app is ready, while its database may still be opening. Default true. */
  waitForDatabase?: boolean
  /** A plugin registered after the app (a test's own hooks, or one that fails to boot). */
  after?: FastifyPluginAsync
}

/** The app on a bare Fastify instance, closed on teardown. */
export async function build (t: Teardownable, options: BuildOptions = {}): Promise<FastifyInstance> {
  // A database of this test's own on the shared PostgreSQL, unless the test chose (DATABASE_URL '' means PGlite).
  const databaseUrl = options.env !== undefined && 'DATABASE_URL' in options.env ? options.env.DATABASE_URL : await uniqueDatabaseUrl(t)
  // The in-process tier is off unless a test turns it on: most tests change Redis behind the app's back.
  // Load shedding is off unless a test turns it on (test/load-shedding.test.ts): on this
  // shared machine a test's own stall (PGlite opening, a busy neighbour) would shed its next requests.
  const config: Config = loadConfig({ LOG_LEVEL: 'silent', OPENAI_TIMEOUT_MS: '3000', LOCAL_CACHE_MAX_ENTRIES: '0', SHED_EVENT_LOOP_DELAY_MS: '0', ...options.env, DATABASE_URL: databaseUrl })
  const fastify = Fastify(serverOptions(config))
  // Teardown first: a boot that fails midway (a plugin throws after others
  // opened Redis, the database, timers) still closes what was opened.
  t.teardown(() => fastify.close())
  // fp() lifts the app's decorations (store, engine, breaker…) to the instance tests hold.
  await fastify.register(fp(app), { ...options, config })
  if (options.after !== undefined) await fastify.register(options.after)
  if (options.listen === true) await fastify.listen({ port: 0, host: '127.0.0.1' })
  else await fastify.ready()
  // The app starts without waiting for its database (plugins/db.ts); most tests assert on it
  // at once, so give its first open + migrate up to 5 s to end, success or failure.
  if (options.waitForDatabase !== false) await settledWithin(fastify.db.firstAttempt, 5000)
  return fastify
}

export interface Stack {
  redisUrl: string
  prefix: string
  openai: FakeOpenAI
  /** Environment for an app on the shared Redis with the fake model and a unique prefix. */
  env: Record<string, string>
}

/** The shared Redis, a fresh fake OpenAI and a key prefix of this test's own. */
export async function stack (t: Teardownable, extra: Record<string, string> = {}): Promise<Stack> {
  const redisUrl = await sharedRedisUrl(t)
  const openai = await startFakeOpenAI()
  t.teardown(() => openai.close())
  const prefix = uniquePrefix('t')
  return {
    redisUrl,
    prefix,
    openai,
    // SHED_EVENT_LOOP_DELAY_MS 0: no load shedding in the servers tests spawn either (see build()).
    env: { REDIS_URL: redisUrl, CACHE_PREFIX: prefix, OPENAI_API_KEY: 'sk-test-not-a-real-key', OPENAI_BASE_URL: openai.baseURL, SHED_EVENT_LOOP_DELAY_MS: '0', ...extra }
  }
}

export interface NarrativeBody {
  profile: { classification: string, primary?: string, hybrid?: string[], percentages: Record<string, number> }
  locale?: string
  userId?: string
}

export const exampleBody: NarrativeBody = {
  profile: {
    classification: 'primary',
    primary: 'Arcturus',
    percentages: { Arcturus: 42.3, Sirius: 18.7, Pleiades: 15.2 }
  },
  locale: 'en',
  userId: 'u-123'
}

/** A distinct valid body per `n`, for tests that need many keys. */
export function bodyFor (n: number, locale = 'en'): NarrativeBody {
  return {
    profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 20 + (n % 60), Sirius: 10 + Math.floor(n / 60) % 10, Pleiades: 5 } },
    locale,
    userId: `u-${n}`
  }
}
