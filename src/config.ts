import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { readFileSync } from 'node:fs'
import { IpAllowlist } from './admin/ip-allowlist.ts'
import { parseDuration, type AdminTokenPolicy } from './admin/token.ts'
import { canonicalLocale } from './domain/locale.ts'
import { canonicalName } from './domain/systems.ts'
import { LOCALE_PATTERN, RESERVED_NAMES, SYSTEM_NAME_PATTERN } from './schemas/narrative.ts'
import { DEFAULT_MODEL_PRICES, type ModelPrice } from './domain/cost.ts'
import { NEWEST_PROMPT, PROMPT_VERSIONS } from './domain/prompt.ts'
import { Cron } from 'croner'

/**
 * Every environment variable of the contract, in one schema. The values are
 * strings in the environment; `parse` turns each into its typed form and
 * reports the first bad one as a single line naming the variable.
 */
export const EnvSchema = Type.Object({
  NODE_ENV: Type.Optional(Type.String()),
  PORT: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}$', description: 'a TCP port number (0-65535)' })),
  HOST: Type.Optional(Type.String({ minLength: 1, description: 'a host name or IP address' })),
  LISTEN_BACKLOG: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of pending connections, 1 to 65535' })),
  WORKERS: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of worker processes, 1 to 64' })),
  SHED_EVENT_LOOP_DELAY_MS: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'milliseconds of mean event-loop delay, 0 (off) or 10 to 60000' })),
  SHED_HEAP_USED_MB: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of MiB, 0 (off) or more' })),
  SHED_RSS_MB: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of MiB, 0 (off) or more' })),
  REDIS_URL: Type.Optional(Type.String({ description: 'a redis:// or rediss:// URL, or comma-separated host:port cluster seeds' })),
  REDIS_SENTINELS: Type.Optional(Type.String({ description: 'comma-separated host:port of the Redis Sentinels' })),
  REDIS_SENTINEL_NAME: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$', description: "the master's name the Sentinels monitor (letters, digits, . _ -), e.g. mymaster" })),
  REDIS_SENTINEL_PASSWORD: Type.Optional(Type.String({ description: "the Sentinels' own password (their requirepass)" })),
  REDIS_USERNAME: Type.Optional(Type.String({ minLength: 1, description: 'an ACL user name of the Redis nodes' })),
  REDIS_PASSWORD: Type.Optional(Type.String({ description: 'the password of the Redis nodes' })),
  REDIS_TLS: Type.Optional(Type.String({ pattern: '^(on|off|true|false|1|0)$', description: 'on or off' })),
  REDIS_TLS_CA: Type.Optional(Type.String({ minLength: 1, description: 'the path of a PEM file of the certificate authorities Redis certificates are checked against' })),
  DATABASE_URL: Type.Optional(Type.String({ description: 'a postgres:// URL' })),
  DATA_DIR: Type.Optional(Type.String({ minLength: 1 })),
  OPENAI_API_KEY: Type.Optional(Type.String()),
  OPENAI_BASE_URL: Type.Optional(Type.String({ description: 'an http:// or https:// URL' })),
  OPENAI_MODEL: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  OPENAI_TIMEOUT_MS: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'milliseconds, 1000 to 120000' })),
  OPENAI_MAX_ATTEMPTS: Type.Optional(Type.String({ pattern: '^[1-5]$', description: 'a whole number from 1 to 5' })),
  CACHE_PREFIX: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,31}$', description: 'lowercase letters, digits, _ or -, at most 32 characters' })),
  CACHE_TTL_DAYS: Type.Optional(Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description: 'a positive number of days' })),
  CACHE_STALE_DAYS: Type.Optional(Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description: 'a positive number of days, below CACHE_TTL_DAYS' })),
  LOCAL_CACHE_MAX_ENTRIES: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of entries, 0 to turn the in-process tier off' })),
  LOCAL_CACHE_TTL_MS: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'milliseconds, 1 to 60000' })),
  MEMORY_STORE_MAX_MB: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of MiB, at least 1' })),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'at least 32 characters' })),
  ADMIN_TOKEN_MAX_TTL: Type.Optional(Type.String({ description: 'seconds, or a duration such as 90s, 30m, 24h or 7d, from 1 second to 30 days' })),
  ADMIN_TOKEN_ISSUER: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'the iss claim admin tokens must carry, 1 to 200 characters' })),
  ADMIN_TOKEN_AUDIENCE: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'the aud claim admin tokens must carry, 1 to 200 characters' })),
  ADMIN_IP_ALLOWLIST: Type.Optional(Type.String({ description: 'comma-separated IPs and CIDRs' })),
  TRUST_PROXY: Type.Optional(Type.String({ description: "off, a hop count, or the proxies' IPs/CIDRs (comma-separated)" })),
  GENERATION_RATE_LIMIT: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of generations per minute, 0 for no limit' })),
  GENERATION_GLOBAL_LIMIT: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of generations per minute for all clients together, 0 for no limit' })),
  CORS_ORIGINS: Type.Optional(Type.String()),
  MODEL_PRICES: Type.Optional(Type.String({ description: 'a JSON object of model name to {"input": USD per 1M tokens, "output": USD per 1M tokens}' })),
  ANALYTICS_RETENTION_DAYS: Type.Optional(Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description: 'a number of days, 0 to keep analytics for ever' })),
  REDIS_MONTHLY_COST_USD: Type.Optional(Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description: 'a non-negative number of US dollars' })),
  SYSTEMS: Type.Optional(Type.String({ description: 'comma-separated system names, or the path of a file (a value with a / or a .) holding one name a line' })),
  LOCALES: Type.Optional(Type.String({ description: 'comma-separated BCP 47 language tags' })),
  PROMPT_VERSION: Type.Optional(Type.String({ description: 'a prompt version of prompts/ (v1, v2…)' })),
  ROLLOUT: Type.Optional(Type.Union([Type.Literal('gradual'), Type.Literal('immediate')], { description: 'gradual or immediate' })),
  ROLLOUT_RATE: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of model calls per minute across the fleet, 1 to 100000' })),
  PROMPT_CANARY: Type.Optional(Type.String({ description: 'a prompt version and a percentage of keys, e.g. v2:10' })),
  PREWARM_SCHEDULE: Type.Optional(Type.String({ description: 'a cron expression (5 fields, or 6 with seconds first), e.g. 0 3 * * *' })),
  PREWARM_MAX_CALLS: Type.Optional(Type.String({ pattern: '^[0-9]+$', description: 'a whole number of model calls per scheduled pre-warm, 1 to 100000' })),
  LOG_LEVEL: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l)), { description: 'one of fatal, error, warn, info, debug, trace, silent' }))
})
export type Env = Static<typeof EnvSchema>

export interface RedisAddress { host: string, port: number }
/** Credentials and TLS of the Redis nodes; keys are absent when not set. */
export interface RedisSecurity {
  username?: string
  password?: string
  /** TLS to the nodes (and to the Sentinels): the CA's PEM when REDIS_TLS_CA is set. */
  tls?: { ca?: string }
}

export type RedisTarget =
  | { kind: 'memory' }
  | ({ kind: 'single', url: string } & RedisSecurity)
  | ({ kind: 'cluster', seeds: RedisAddress[] } & RedisSecurity)
  | ({ kind: 'sentinel', sentinels: RedisAddress[], name: string, sentinelPassword?: string } & RedisSecurity)

export interface Config {
  production: boolean
  port: number
  host: string
  /** Connections the kernel may queue before accept (capped by net.core.somaxconn). */
  listenBacklog: number
  /** Worker processes sharing the port (node:cluster); 1 serves from this process alone. */
  workers: number
  /** Load shedding (plugins/load-shedding.ts, @fastify/under-pressure): past any of these, 503 with Retry-After. 0: that check is off. */
  shed: { eventLoopDelayMs: number, heapUsedBytes: number, rssBytes: number }
  redis: RedisTarget
  databaseUrl: string | undefined
  dataDir: string
  openai: { apiKey: string | undefined, baseURL: string | undefined, model: string, timeoutMs: number, maxAttempts: number }
  cachePrefix: string
  ttlSeconds: number
  staleSeconds: number
  memoryStoreMaxBytes: number
  localCache: { maxEntries: number, ttlMs: number }
  jwtSecret: string | undefined
  /** What an admin token must carry besides its signature: lifetime cap, and iss/aud when set. */
  adminToken: AdminTokenPolicy
  adminIpAllowlist: string[]
  trustProxy: TrustProxy
  generationRateLimit: number
  /** Model calls all clients together may cause per minute, across instances; 0 is no limit. */
  generationGlobalLimit: number
  corsOrigins: string[]
  modelPrices: Record<string, ModelPrice>
  redisMonthlyUsd: number
  /** The known star systems (SYSTEMS), in their catalogue spelling; undefined: any well-formed name. */
  systems: string[] | undefined
  /** The served locales (LOCALES), canonical; undefined: any well-formed tag. */
  locales: string[] | undefined
  /** Analytics rows older than this are deleted (hourly); 0 keeps them for ever. */
  analyticsRetentionMs: number
  logLevel: string
  prompts: PromptConfig
}

/** Which prompt versions serve, and how a change of version is rolled out (docs/rollout.md). */
export interface PromptConfig {
  /** PROMPT_VERSION: the active version (the newest by default). */
  version: string
  /** PROMPT_CANARY: a stable share of keys (by key hash) on another version. */
  canary: { version: string, percent: number } | undefined
  /** ROLLOUT: gradual (older entries answer at once, the new version is written in the background) or immediate. */
  rollout: 'gradual' | 'immediate'
  /** ROLLOUT_RATE: the background writes' model calls per minute, fleet-wide. */
  rolloutRate: number
  /** PREWARM_SCHEDULE: when the scheduled pre-warm runs (a cron expression), if at all. */
  prewarmSchedule: string | undefined
  /** PREWARM_MAX_CALLS: the most model calls one scheduled pre-warm may make. */
  prewarmMaxCalls: number
}

/**
 * Whom X-Forwarded-For is taken from: nobody (false), the last `hops`
 * proxies, or the proxies at these addresses. Never everybody: with
 * `trustProxy: true` the left-most entry, which the client writes, would be
 * request.ip, and the allowlist and every rate limit would count what the
 * client says.
 */
export type TrustProxy = false | { hops: number } | { proxies: string[] }

export class ConfigError extends Error {
  override readonly name: string = 'ConfigError'
  readonly code = 'NARR_CONFIG_INVALID'
}

const DAY = 86_400

function fail (variable: string, expected: string): never {
  throw new ConfigError(`Invalid configuration: ${variable} must be ${expected}`)
}

function list (value: string | undefined): string[] {
  return (value ?? '').split(',').map(s => s.trim()).filter(Boolean)
}

const SEEDS_EXPECTED = 'a redis:// or rediss:// URL, or comma-separated host:port cluster seeds (or redis:// / rediss:// seed URLs)'

function parseAddress (variable: string, entry: string, expected: string): RedisAddress {
  const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$/.exec(entry)
  if (m === null || Number(m[2]) > 65535) fail(variable, `${expected} ("${entry}" is not host:port)`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) }
}

function onOff (value: string | undefined): boolean {
  return value !== undefined && /^(on|true|1)$/.test(value)
}

/**
 * Where Redis is: nowhere (the in-process store), one URL, Cluster seeds
 * (bare host:port, or redis:// / rediss:// URLs carrying the credentials and
 * TLS), or Sentinels and the master's name. REDIS_USERNAME / REDIS_PASSWORD
 * and REDIS_TLS / REDIS_TLS_CA apply to every node; a URL's own credentials
 * and scheme win over them.
 */
function parseRedis (e: Env): RedisTarget {
  const url = e.REDIS_URL?.trim() ?? ''
  const sentinels = e.REDIS_SENTINELS?.trim() ?? ''
  if (url !== '' && sentinels !== '') fail('REDIS_SENTINELS', 'unset when REDIS_URL is set (Redis is reached one way: a URL, Cluster seeds, or Sentinels)')
  if (sentinels === '' && e.REDIS_SENTINEL_NAME !== undefined) fail('REDIS_SENTINELS', 'set when REDIS_SENTINEL_NAME is (comma-separated host:port of the Sentinels)')
  if (url === '' && sentinels === '') {
    for (const name of ['REDIS_PASSWORD', 'REDIS_USERNAME', 'REDIS_TLS_CA', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (e[name] !== undefined) fail(name, 'unset when neither REDIS_URL nor REDIS_SENTINELS is set (there is no Redis to use it for)')
    }
    return { kind: 'memory' }
  }
  const security: RedisSecurity = {}
  if (e.REDIS_USERNAME !== undefined) security.username = e.REDIS_USERNAME
  if (e.REDIS_PASSWORD !== undefined) security.password = e.REDIS_PASSWORD
  let ca: string | undefined
  if (e.REDIS_TLS_CA !== undefined) {
    try { ca = readFileSync(e.REDIS_TLS_CA, 'utf8') } catch (err) { fail('REDIS_TLS_CA', `the path of a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}: ${e.REDIS_TLS_CA})`) }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) fail('REDIS_TLS_CA', `the path of a PEM file of certificates (${e.REDIS_TLS_CA} holds none)`)
  }
  const tlsWanted = onOff(e.REDIS_TLS) || ca !== undefined
  const tls = (): { ca?: string } => (ca === undefined ? {} : { ca })

  if (sentinels !== '') {
    if (e.REDIS_SENTINEL_NAME === undefined) fail('REDIS_SENTINEL_NAME', "set when REDIS_SENTINELS is (the master's name the Sentinels monitor, e.g. mymaster)")
    const addresses = list(sentinels).map(entry => parseAddress('REDIS_SENTINELS', entry, 'comma-separated host:port of the Redis Sentinels'))
    if (addresses.length === 0) fail('REDIS_SENTINELS', 'comma-separated host:port of the Redis Sentinels')
    return {
      kind: 'sentinel',
      sentinels: addresses,
      name: e.REDIS_SENTINEL_NAME,
      ...(e.REDIS_SENTINEL_PASSWORD !== undefined ? { sentinelPassword: e.REDIS_SENTINEL_PASSWORD } : {}),
      ...security,
      ...(tlsWanted ? { tls: tls() } : {})
    }
  }

  if (e.REDIS_SENTINEL_PASSWORD !== undefined) fail('REDIS_SENTINEL_PASSWORD', 'unset unless REDIS_SENTINELS is set')
  const entries = list(url)
  if (entries.length === 1 && /^rediss?:\/\//.test(entries[0])) {
    if (!URL.canParse(entries[0])) fail('REDIS_URL', 'a valid redis:// or rediss:// URL')
    const secure = entries[0].startsWith('rediss://') || tlsWanted
    return { kind: 'single', url: entries[0], ...security, ...(secure ? { tls: tls() } : {}) }
  }
  const urls = entries.filter(entry => /^rediss?:\/\//.test(entry))
  if (urls.length > 0 && urls.length < entries.length) fail('REDIS_URL', `${SEEDS_EXPECTED}, not both kinds at once`)
  if (urls.length === 0) {
    if (entries.length === 0) fail('REDIS_URL', SEEDS_EXPECTED)
    const seeds = entries.map(entry => parseAddress('REDIS_URL', entry, SEEDS_EXPECTED))
    return { kind: 'cluster', seeds, ...security, ...(tlsWanted ? { tls: tls() } : {}) }
  }
  // Seed URLs: one scheme for all; credentials from the first URL that has them.
  const parsed = urls.map(entry => {
    if (!URL.canParse(entry)) fail('REDIS_URL', `${SEEDS_EXPECTED} ("${entry}" is not a valid URL)`)
    return new URL(entry)
  })
  if (new Set(parsed.map(u => u.protocol)).size > 1) fail('REDIS_URL', `${SEEDS_EXPECTED}, all redis:// or all rediss://`)
  const seeds = parsed.map(u => parseAddress('REDIS_URL', u.host, SEEDS_EXPECTED))
  const withAuth = parsed.find(u => u.password !== '' || u.username !== '')
  if (withAuth?.username !== undefined && withAuth.username !== '') security.username = decodeURIComponent(withAuth.username)
  if (withAuth?.password !== undefined && withAuth.password !== '') security.password = decodeURIComponent(withAuth.password)
  const secure = parsed[0].protocol === 'rediss:' || tlsWanted
  return { kind: 'cluster', seeds, ...security, ...(secure ? { tls: tls() } : {}) }
}

const TRUST_PROXY_EXPECTED = "off, a hop count, or the proxies' IPs/CIDRs (comma-separated)"
const MAX_PROXY_HOPS = 10

function parseTrustProxy (raw: string | undefined): TrustProxy {
  const value = (raw ?? '').trim()
  const word = value.toLowerCase()
  if (value === '' || word === 'off' || word === 'false' || word === 'no' || value === '0') return false
  if (/^[0-9]+$/.test(value)) {
    const hops = Number(value)
    if (hops > MAX_PROXY_HOPS) fail('TRUST_PROXY', `${TRUST_PROXY_EXPECTED}; a hop count is at most ${MAX_PROXY_HOPS} (got ${hops})`)
    return { hops }
  }
  if (word === 'true' || word === 'on' || word === 'yes') {
    fail('TRUST_PROXY', `${TRUST_PROXY_EXPECTED}; \`${value}\` would trust any client's X-Forwarded-For — write the balancer's address, e.g. TRUST_PROXY=10.0.0.5`)
  }
  const proxies = list(value)
  if (proxies.length === 0) fail('TRUST_PROXY', TRUST_PROXY_EXPECTED)
  // The same parser as the admin allowlist: what passes here is what the trust check understands.
  for (const entry of proxies) {
    try { new IpAllowlist([entry]).allows(entry) } catch { fail('TRUST_PROXY', `${TRUST_PROXY_EXPECTED} ("${entry}" is not an IP address or CIDR) — write the balancer's address, e.g. TRUST_PROXY=10.0.0.5`) }
  }
  return { proxies }
}

/** The first schema error, phrased as "VARIABLE must be …". */
function schemaFailure (env: Record<string, unknown>): void {
  const error = Value.Errors(EnvSchema, env).First()
  if (error === undefined) return
  const variable = error.path.replace(/^\//, '')
  const schema = (EnvSchema.properties as Record<string, TSchema>)[variable]
  fail(variable, schema?.description ?? error.message)
}

function parsePrices (raw: string | undefined): Record<string, ModelPrice> {
  if (raw === undefined) return {}
  const expected = 'a JSON object of model name to {"input": USD per 1M tokens, "output": USD per 1M tokens}'
  let value: unknown
  try { value = JSON.parse(raw) } catch { fail('MODEL_PRICES', expected) }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('MODEL_PRICES', expected)
  const prices: Record<string, ModelPrice> = {}
  for (const [model, price] of Object.entries(value as Record<string, unknown>)) {
    const p = price as Partial<ModelPrice> | null
    if (typeof p !== 'object' || p === null || !(typeof p.input === 'number' && p.input >= 0) || !(typeof p.output === 'number' && p.output >= 0)) fail('MODEL_PRICES', `${expected} ("${model}" is not)`)
    prices[model] = { input: p.input, output: p.output }
  }
  return prices
}

const SYSTEMS_EXPECTED = 'comma-separated system names, or the path of a file (a value with a / or a .) holding one name a line'
const NAME = new RegExp(SYSTEM_NAME_PATTERN)

/**
 * SYSTEMS: a list, or a file of one name a line (blank lines and # comments
 * skipped). A system name never holds a / or a ., so such a value is a path.
 */
function parseSystems (raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined
  let entries: string[]
  if (/[/.]/.test(raw)) {
    let text: string
    try { text = readFileSync(raw.trim(), 'utf8') } catch (err) { fail('SYSTEMS', `${SYSTEMS_EXPECTED} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'}: ${raw.trim()})`) }
    entries = text.split(/\r?\n/).map(line => line.trim()).filter(line => line !== '' && !line.startsWith('#'))
  } else {
    entries = list(raw)
  }
  if (entries.length === 0) fail('SYSTEMS', `${SYSTEMS_EXPECTED}, naming at least one system`)
  const seen = new Map<string, string>()
  for (const entry of entries) {
    const name = canonicalName(entry)
    if (name.length > 40 || !NAME.test(name) || RESERVED_NAMES.includes(name)) fail('SYSTEMS', `${SYSTEMS_EXPECTED}; each name 1 to 40 letters, digits, spaces, ' or -, starting with a letter ("${entry}" is not)`)
    const twice = seen.get(name.toLowerCase())
    if (twice !== undefined) fail('SYSTEMS', `${SYSTEMS_EXPECTED}, each named once ("${twice}" and "${entry}" are one name)`)
    seen.set(name.toLowerCase(), name)
  }
  return [...seen.values()]
}

/** LOCALES: each a tag a request could send (the route's pattern), kept in its canonical form. */
function parseLocales (raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined
  const pattern = new RegExp(LOCALE_PATTERN)
  const tags = new Set<string>()
  for (const entry of list(raw)) {
    const tag = pattern.test(entry) ? canonicalLocale(entry) : undefined
    if (tag === undefined) fail('LOCALES', `comma-separated BCP 47 language tags ("${entry}" is not one)`)
    tags.add(tag)
  }
  if (tags.size === 0) fail('LOCALES', 'comma-separated BCP 47 language tags, at least one')
  return [...tags]
}

function knownVersion (variable: string, value: string): string {
  if (!PROMPT_VERSIONS.includes(value)) fail(variable, `a prompt version of prompts/: ${PROMPT_VERSIONS.join(', ')} (got "${value}")`)
  return value
}

function parsePrompts (e: Env): PromptConfig {
  const version = knownVersion('PROMPT_VERSION', (e.PROMPT_VERSION ?? NEWEST_PROMPT.version).trim())
  let canary: PromptConfig['canary']
  if (e.PROMPT_CANARY !== undefined) {
    const m = /^\s*([^:\s]+)\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*$/.exec(e.PROMPT_CANARY)
    const expected = `a prompt version and a percentage of keys, e.g. v2:10 (versions: ${PROMPT_VERSIONS.join(', ')})`
    if (m === null) fail('PROMPT_CANARY', expected)
    const percent = Number(m[2])
    if (!PROMPT_VERSIONS.includes(m[1])) fail('PROMPT_CANARY', `${expected}; "${m[1]}" is not one`)
    if (!(percent > 0 && percent <= 100)) fail('PROMPT_CANARY', `${expected}; the percentage is above 0 and at most 100 (got ${m[2]})`)
    canary = m[1] === version ? undefined : { version: m[1], percent }
  }
  const rolloutRate = Number(e.ROLLOUT_RATE ?? 60)
  if (rolloutRate < 1 || rolloutRate > 100_000) fail('ROLLOUT_RATE', 'a whole number of model calls per minute across the fleet, 1 to 100000')
  const prewarmMaxCalls = Number(e.PREWARM_MAX_CALLS ?? 1000)
  if (prewarmMaxCalls < 1 || prewarmMaxCalls > 100_000) fail('PREWARM_MAX_CALLS', 'a whole number of model calls per scheduled pre-warm, 1 to 100000')
  let prewarmSchedule: string | undefined
  if (e.PREWARM_SCHEDULE !== undefined) {
    prewarmSchedule = e.PREWARM_SCHEDULE.trim()
    try {
      new Cron(prewarmSchedule, { paused: true }).stop()
    } catch (err) {
      fail('PREWARM_SCHEDULE', `a cron expression (5 fields, or 6 with seconds first), e.g. 0 3 * * * (${(err as Error).message})`)
    }
  }
  return { version, canary, rollout: e.ROLLOUT ?? 'gradual', rolloutRate, prewarmSchedule, prewarmMaxCalls }
}

export function loadConfig (source: NodeJS.ProcessEnv = process.env): Config {
  // Only the variables we know: the rest of the environment is not ours to judge.
  const env: Record<string, string> = {}
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = source[name]
    if (value !== undefined && value !== '') env[name] = value
  }
  schemaFailure(env)
  const e = env as Env

  const production = e.NODE_ENV === 'production'
  const port = Number(e.PORT ?? 3000)
  if (port > 65535) fail('PORT', 'a TCP port number (0-65535)')

  const ttlDays = Number(e.CACHE_TTL_DAYS ?? 30)
  const staleDays = Number(e.CACHE_STALE_DAYS ?? 7)
  if (!(ttlDays > 0)) fail('CACHE_TTL_DAYS', 'a positive number of days')
  if (!(staleDays > 0) || staleDays >= ttlDays) fail('CACHE_STALE_DAYS', `a positive number of days, below CACHE_TTL_DAYS (${ttlDays})`)

  if (e.DATABASE_URL !== undefined && !/^postgres(ql)?:\/\//.test(e.DATABASE_URL)) fail('DATABASE_URL', 'a postgres:// URL')
  if (e.OPENAI_BASE_URL !== undefined) {
    let ok = false
    try { ok = /^https?:$/.test(new URL(e.OPENAI_BASE_URL).protocol) } catch {}
    if (!ok) fail('OPENAI_BASE_URL', 'an http:// or https:// URL')
  }
  const timeoutMs = Number(e.OPENAI_TIMEOUT_MS ?? 20_000)
  if (timeoutMs < 1000 || timeoutMs > 120_000) fail('OPENAI_TIMEOUT_MS', 'milliseconds, 1000 to 120000')

  const maxTokenTtl = parseDuration(e.ADMIN_TOKEN_MAX_TTL ?? '24h')
  if (maxTokenTtl === undefined || maxTokenTtl < 1 || maxTokenTtl > 30 * DAY) fail('ADMIN_TOKEN_MAX_TTL', 'seconds, or a duration such as 90s, 30m, 24h or 7d, from 1 second to 30 days')

  if (production && e.JWT_SECRET === undefined) fail('JWT_SECRET', 'set in production (at least 32 characters)')

  const allowlist = list(e.ADMIN_IP_ALLOWLIST ?? '127.0.0.1,::1')
  for (const entry of allowlist) {
    try { new IpAllowlist([entry]).allows(entry) } catch { fail('ADMIN_IP_ALLOWLIST', `comma-separated IPs and CIDRs ("${entry}" is neither)`) }
  }
  const listenBacklog = Number(e.LISTEN_BACKLOG ?? 4096)
  if (listenBacklog < 1 || listenBacklog > 65_535) fail('LISTEN_BACKLOG', 'a whole number of pending connections, 1 to 65535')
  const workers = Number(e.WORKERS ?? 1)
  if (workers < 1 || workers > 64) fail('WORKERS', 'a whole number of worker processes, 1 to 64')
  // Workers are separate processes: they share the cache and the durable tier only through Redis and PostgreSQL.
  if (workers > 1 && e.REDIS_URL === undefined && e.REDIS_SENTINELS === undefined) fail('REDIS_URL', `set when WORKERS is above 1, or REDIS_SENTINELS (workers share the cache and its locks through Redis; WORKERS=${workers})`)
  if (workers > 1 && e.DATABASE_URL === undefined) fail('DATABASE_URL', `set when WORKERS is above 1 (the embedded database opens in one process only; WORKERS=${workers})`)
  // On by default in production only: in development the embedded database's first open
  // stalls the loop for seconds, and the requests right after it would be shed.
  const shedDelay = Number(e.SHED_EVENT_LOOP_DELAY_MS ?? (production ? 1000 : 0))
  if (shedDelay !== 0 && (shedDelay < 10 || shedDelay > 60_000)) fail('SHED_EVENT_LOOP_DELAY_MS', 'milliseconds of mean event-loop delay, 0 (off) or 10 to 60000')
  const localTtl = Number(e.LOCAL_CACHE_TTL_MS ?? 5000)
  if (localTtl < 1 || localTtl > 60_000) fail('LOCAL_CACHE_TTL_MS', 'milliseconds, 1 to 60000')
  const memoryMb = Number(e.MEMORY_STORE_MAX_MB ?? 256)
  if (memoryMb < 1) fail('MEMORY_STORE_MAX_MB', 'a whole number of MiB, at least 1')

  return {
    production,
    port,
    host: e.HOST ?? '127.0.0.1',
    listenBacklog,
    workers,
    shed: { eventLoopDelayMs: shedDelay, heapUsedBytes: Number(e.SHED_HEAP_USED_MB ?? 0) * 1024 * 1024, rssBytes: Number(e.SHED_RSS_MB ?? 0) * 1024 * 1024 },
    redis: parseRedis(e),
    databaseUrl: e.DATABASE_URL,
    dataDir: e.DATA_DIR ?? './data',
    openai: {
      apiKey: e.OPENAI_API_KEY,
      baseURL: e.OPENAI_BASE_URL,
      model: e.OPENAI_MODEL ?? 'gpt-4o',
      timeoutMs,
      maxAttempts: Number(e.OPENAI_MAX_ATTEMPTS ?? 2)
    },
    cachePrefix: e.CACHE_PREFIX ?? 'narr',
    ttlSeconds: Math.round(ttlDays * DAY),
    staleSeconds: Math.round(staleDays * DAY),
    memoryStoreMaxBytes: memoryMb * 1024 * 1024,
    localCache: { maxEntries: Number(e.LOCAL_CACHE_MAX_ENTRIES ?? 10_000), ttlMs: localTtl },
    jwtSecret: e.JWT_SECRET,
    adminToken: { maxTtlSeconds: maxTokenTtl, issuer: e.ADMIN_TOKEN_ISSUER, audience: e.ADMIN_TOKEN_AUDIENCE },
    adminIpAllowlist: allowlist,
    trustProxy: parseTrustProxy(e.TRUST_PROXY),
    generationRateLimit: Number(e.GENERATION_RATE_LIMIT ?? 120),
    generationGlobalLimit: Number(e.GENERATION_GLOBAL_LIMIT ?? 0),
    corsOrigins: list(e.CORS_ORIGINS),
    modelPrices: { ...DEFAULT_MODEL_PRICES, ...parsePrices(e.MODEL_PRICES) },
    redisMonthlyUsd: Number(e.REDIS_MONTHLY_COST_USD ?? 10),
    systems: parseSystems(e.SYSTEMS),
    locales: parseLocales(e.LOCALES),
    analyticsRetentionMs: Math.round(Number(e.ANALYTICS_RETENTION_DAYS ?? 90) * DAY * 1000),
    logLevel: e.LOG_LEVEL ?? 'info',
    prompts: parsePrompts(e)
  }
}
