import t from 'tap'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './support/ports.ts'
import { waitUntil } from './support/wait.ts'
import { ConfigError, loadConfig } from '../src/config.ts'

t.test('defaults: embedded everything', async t => {
  const c = loadConfig({})
  t.match(c, { port: 3000, host: '127.0.0.1', listenBacklog: 4096, analyticsRetentionMs: 90 * 86_400_000, redis: { kind: 'memory' }, databaseUrl: undefined, dataDir: './data', cachePrefix: 'narr', trustProxy: false, generationRateLimit: 120, generationGlobalLimit: 0, logLevel: 'info' })
  t.same(c.adminIpAllowlist, ['127.0.0.1', '::1'])
  t.equal(c.openai.model, 'gpt-4o')
  t.equal(c.openai.apiKey, undefined)
  t.equal(c.ttlSeconds, 30 * 86400)
  t.equal(c.staleSeconds, 7 * 86400)
})

t.test('REDIS_URL: a URL, or cluster seeds', async t => {
  t.same(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379/2' }).redis, { kind: 'single', url: 'redis://127.0.0.1:6379/2' })
  t.same(loadConfig({ REDIS_URL: 'rediss://user:pw@cache.example:6380' }).redis.kind, 'single')
  t.same(loadConfig({ REDIS_URL: '127.0.0.1:7000, 127.0.0.1:7001,[::1]:7002' }).redis, {
    kind: 'cluster', seeds: [{ host: '127.0.0.1', port: 7000 }, { host: '127.0.0.1', port: 7001 }, { host: '::1', port: 7002 }]
  })
})

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ PORT: 'eighty' }, /^Invalid configuration: PORT must be a TCP port number/],
  [{ PORT: '70000' }, /PORT must be a TCP port number/],
  [{ LISTEN_BACKLOG: '0' }, /LISTEN_BACKLOG must be a whole number of pending connections, 1 to 65535/],
  [{ LISTEN_BACKLOG: 'lots' }, /LISTEN_BACKLOG must be a whole number of pending connections/],
  [{ ANALYTICS_RETENTION_DAYS: 'forever' }, /ANALYTICS_RETENTION_DAYS must be a number of days, 0 to keep analytics for ever/],
  [{ REDIS_URL: 'http://x' }, /REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL, or comma-separated host:port cluster seeds/],
  [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL must be a postgres:\/\/ URL/],
  [{ OPENAI_BASE_URL: 'ftp://x' }, /OPENAI_BASE_URL must be an http:\/\/ or https:\/\/ URL/],
  [{ CACHE_PREFIX: 'Has Space' }, /CACHE_PREFIX must be lowercase letters/],
  [{ CACHE_TTL_DAYS: '-1' }, /CACHE_TTL_DAYS must be a positive number of days/],
  [{ CACHE_STALE_DAYS: '40' }, /CACHE_STALE_DAYS must be a positive number of days, below CACHE_TTL_DAYS \(30\)/],
  [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32 characters/],
  [{ NODE_ENV: 'production' }, /JWT_SECRET must be set in production/],
  [{ ADMIN_IP_ALLOWLIST: '10.0.0.0/8,not-an-ip' }, /ADMIN_IP_ALLOWLIST must be comma-separated IPs and CIDRs \("not-an-ip" is neither\)/],
  [{ GENERATION_RATE_LIMIT: 'lots' }, /GENERATION_RATE_LIMIT must be a whole number/],
  [{ TRUST_PROXY: 'true' }, /^Invalid configuration: TRUST_PROXY must be off, a hop count, or the proxies' IPs\/CIDRs \(comma-separated\); `true` would trust any client's X-Forwarded-For — write the balancer's address, e\.g\. TRUST_PROXY=10\.0\.0\.5$/],
  [{ TRUST_PROXY: 'yes' }, /TRUST_PROXY must be off, a hop count, or the proxies' IPs\/CIDRs/],
  [{ ADMIN_TOKEN_MAX_TTL: 'forever' }, /ADMIN_TOKEN_MAX_TTL must be seconds, or a duration such as 90s, 30m, 24h or 7d/],
  [{ GENERATION_GLOBAL_LIMIT: '-5' }, /GENERATION_GLOBAL_LIMIT must be a whole number of generations per minute for all clients together, 0 for no limit/],
  [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent/]
]

t.test('a bad value is one line naming the variable and what was expected', async t => {
  for (const [env, message] of bad) {
    t.throws(() => loadConfig(env), message, JSON.stringify(env))
    try { loadConfig(env) } catch (err) {
      t.ok(err instanceof ConfigError)
      t.notMatch((err as Error).message, /\n/, 'one line')
      if (env.JWT_SECRET !== undefined) t.notMatch((err as Error).message, new RegExp(env.JWT_SECRET), 'the secret is not echoed')
    }
  }
})

t.test('the server exits 1 with that line on a bad value', async t => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { ...process.env, PORT: 'not-a-port', LOG_LEVEL: 'silent' }, encoding: 'utf8', timeout: 30_000
  })
  t.equal(run.status, 1)
  t.equal(run.stderr.trim(), 'Invalid configuration: PORT must be a TCP port number (0-65535)')
})

t.test('the server listens with LISTEN_BACKLOG as its accept queue (ss shows it as Send-Q)', async t => {
  const port = await freePort()
  const dataDir = await mkdtemp(join(tmpdir(), 'backlog-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  // Embedded defaults: no Redis, PostgreSQL or model needed.
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), LISTEN_BACKLOG: '1234', DATA_DIR: dataDir, LOG_LEVEL: 'silent' }
  for (const name of ['REDIS_URL', 'DATABASE_URL', 'OPENAI_API_KEY', 'OPENAI_BASE_URL']) delete env[name]
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env,
    stdio: 'ignore'
  })
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  })
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok === true, { timeoutMs: 30_000, what: 'the server' })
  const listening = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim().split(/\s+/)
  t.equal(listening[2], '1234', `Send-Q of the listening socket: ${listening.join(' ')}`)
})
