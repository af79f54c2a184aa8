// Shared by the fault suite (not a test file: tap runs only *.test.ts).
import type { FastifyInstance, InjectOptions } from 'fastify'
import { Redis } from 'ioredis'
import { decodeEntry } from '../../src/narrative/codec.ts'
import { versionOf } from '../../src/swr/store.ts'
import { cacheKey } from '../../src/domain/cache-key.ts'
import { buildMessages, ENGINE_VERSION } from '../../src/domain/prompt.ts'
import { defaultReply } from '../support/fake-openai.ts'
import type { Teardownable } from '../support/env.ts'
import { build, stack, type Stack } from '../helper.ts'
import { startRedis, type RedisProc } from '../support/redis-server.ts'
import type { BreakerPluginOptions } from '../../plugins/breaker.ts'

export interface Outcome {
  /** HTTP status */
  code: number
  /** cache.status of a 200 */
  status: string | undefined
  /** how long the request took */
  ms: number
  /** when it started (Date.now()) */
  at: number
  body: string
}

/** One request through inject(), timed. */
export async function timed (app: FastifyInstance, options: InjectOptions): Promise<Outcome> {
  const at = Date.now()
  const res = await app.inject(options)
  let status: string | undefined
  try { status = res.json()?.cache?.status } catch { status = undefined }
  return { code: res.statusCode, status, ms: Date.now() - at, at, body: res.body }
}

export const postNarrative = (app: FastifyInstance, payload: unknown): Promise<Outcome> =>
  timed(app, { method: 'POST', url: '/api/narrative', payload: payload as InjectOptions['payload'] })

export interface Load {
  readonly results: Outcome[]
  /** Stops the workers and resolves with every outcome once the requests in flight are done. */
  stop (): Promise<Outcome[]>
}

/**
 * `workers` loops of requests until stop(); request i of the whole load gets
 * `payloadFor(i)` on `apps[i % apps.length]`. Bounded by `maxRequests` too.
 */
export function startLoad (apps: FastifyInstance[], payloadFor: (i: number) => unknown, workers = 4, maxRequests = 5000): Load {
  const results: Outcome[] = []
  const state = { stopped: false }
  let next = 0
  const loops = Array.from({ length: workers }, async () => {
    while (!state.stopped && next < maxRequests) {
      const i = next++
      results.push(await postNarrative(apps[i % apps.length], payloadFor(i)))
    }
  })
  return {
    results,
    async stop () {
      state.stopped = true
      await Promise.all(loops)
      return results
    }
  }
}

/** Asks until every app's breaker is closed and its Redis client ready (breakers move only on calls). */
export async function waitRecovered (apps: FastifyInstance[], payload: unknown, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    await Promise.all(apps.map(a => postNarrative(a, payload)))
    if (apps.every(a => a.breaker.state === 'closed' && (a.store.kind === 'memory' || (a.redis as unknown as { status: string }).status === 'ready'))) return
    if (Date.now() > deadline) throw new Error(`not recovered after ${timeoutMs} ms: breakers ${apps.map(a => a.breaker.state).join(', ')}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** A plain ioredis client for checks, closed on teardown. */
export function redisClient (t: Teardownable, url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false })
  redis.on('error', () => {})
  t.teardown(() => { redis.disconnect() })
  return redis
}

async function scanAll (redis: Redis, match: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** Build and refresh locks of a namespace that are in Redis now. */
export async function lockKeys (redis: Redis, prefix: string): Promise<string[]> {
  return [...await scanAll(redis, `lock:${prefix}:*`), ...await scanAll(redis, `refresh:${prefix}:*`)]
}

export interface ValueAudit {
  /** narrative keys checked */
  keys: number
  /** what is wrong, one line per bad key */
  problems: string[]
}

/**
 * Every cached narrative of the namespace must decode, carry a sane version,
 * belong to its key (its profile hashes to it) and be exactly what the fake
 * model writes for that profile: no partial, template, mixed-up or
 * misaligned value. `locale` is the locale the test bodies used.
 */
export async function auditValues (redis: Redis, prefix: string, locale = 'en'): Promise<ValueAudit> {
  const problems: string[] = []
  const keys = await scanAll(redis, `${prefix}:v1:*`)
  const now = Date.now()
  for (const key of keys) {
    const stored = await redis.getBuffer(key)
    if (stored === null) continue // expired or deleted meanwhile
    let entry
    try {
      entry = decodeEntry(stored, ENGINE_VERSION)
    } catch (err) {
      problems.push(`${key}: does not decode (${(err as Error).message})`)
      continue
    }
    const version = versionOf(stored)
    if (!(version > now - 3_600_000 && version <= now)) problems.push(`${key}: version ${version} is not a recent build time`)
    if (cacheKey(entry.profile as never, locale, { prefix }) !== key) problems.push(`${key}: holds the value of another key`)
    const expected = defaultReply({ messages: buildMessages(entry.profile as never, locale) })
    if (entry.engine !== 'gpt-4o') problems.push(`${key}: engine ${entry.engine} (only the model's narratives are cached)`)
    // compared field by field: a value restored from PostgreSQL's jsonb has its keys in another order
    if (entry.narrative.summary !== expected.summary || JSON.stringify(entry.narrative.bullets) !== JSON.stringify(expected.bullets)) problems.push(`${key}: narrative is not the model's for this profile`)
  }
  return { keys: keys.length, problems }
}

export function percentile (values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

export function summary (outcomes: Outcome[]): string {
  const by = new Map<string, number>()
  for (const o of outcomes) by.set(`${o.code}/${o.status ?? '-'}`, (by.get(`${o.code}/${o.status ?? '-'}`) ?? 0) + 1)
  const ms = outcomes.map(o => o.ms)
  return `${outcomes.length} requests [${[...by].map(([k, n]) => `${k}: ${n}`).join(', ')}], p50 ${percentile(ms, 0.5)} ms, max ${Math.max(0, ...ms)} ms`
}

/** Two app instances on a Redis of the test's own (to break), a fast fake model, a unique prefix, no generation limit. */
export async function twoAppsOnOwnRedis (t: Teardownable, breaker: BreakerPluginOptions): Promise<{ redis: RedisProc, s: Stack, env: Record<string, string>, apps: FastifyInstance[] }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const s = await stack(t)
  s.openai.setLatency(20)
  // Load from one address creates far more than 120 new keys a minute: the generation limit is not what these tests are about.
  const env = { ...s.env, REDIS_URL: redis.url, GENERATION_RATE_LIMIT: '0' }
  const apps = [await build(t, { env, breaker }), await build(t, { env, breaker })]
  return { redis, s, env, apps }
}
