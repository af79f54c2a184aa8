import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build, bodyFor, stack } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { redisCli, startRedis } from './support/redis-server.ts'
import { freePort } from './support/ports.ts'
import { startSentinelSet } from './support/redis-sentinel.ts'
import { lastUserMessage } from './support/fake-openai.ts'
import { lockKey } from '../src/swr/keys.ts'
import { loadConfig } from '../src/config.ts'

// Redis behind three real Sentinels (master + replica, with a password):
// answers through the master the Sentinels name, and after a failover
// (SENTINEL FAILOVER, then the old master killed) new requests are answered,
// waiters are not stranded and a build whose lock was lost is not paid twice.

function callsPerPrompt (requests: Array<{ body?: unknown }>): Map<string, number> {
  const counts = new Map<string, number>()
  for (const r of requests) {
    const prompt = lastUserMessage(r.body as never)
    counts.set(prompt, (counts.get(prompt) ?? 0) + 1)
  }
  return counts
}

t.test('REDIS_SENTINELS: config', async t => {
  const c = loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, sentinel-2:26379', REDIS_SENTINEL_NAME: 'mymaster', REDIS_PASSWORD: 'pw', REDIS_SENTINEL_PASSWORD: 'spw', REDIS_TLS: 'on' })
  t.same(c.redis, { kind: 'sentinel', sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-2', port: 26379 }], name: 'mymaster', sentinelPassword: 'spw', password: 'pw', tls: {} })
  t.throws(() => loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379' }), /^Invalid configuration: REDIS_SENTINEL_NAME must be set when REDIS_SENTINELS is/)
  t.throws(() => loadConfig({ REDIS_SENTINEL_NAME: 'mymaster' }), /REDIS_SENTINELS must be set when REDIS_SENTINEL_NAME is/)
  t.throws(() => loadConfig({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_URL: 'redis://x:1' }), /REDIS_SENTINELS must be unset when REDIS_URL is set/)
  t.throws(() => loadConfig({ REDIS_SENTINELS: 'nope', REDIS_SENTINEL_NAME: 'm' }), /REDIS_SENTINELS must be comma-separated host:port of the Redis Sentinels \("nope" is not host:port\)/)
})

t.test('a master, a replica and three Sentinels: answers, a failover, a lost lock', async t => {
  const set = await startSentinelSet({ password: 'sentinel-test-pw' })
  t.teardown(() => set.stop())
  const s = await stack(t)
  const databaseUrl = await uniqueDatabaseUrl(t)
  const env = { ...s.env, ...set.env, REDIS_URL: '', DATABASE_URL: databaseUrl }
  const a = await build(t, { env })
  const b = await build(t, { env })
  t.equal(a.store.kind, 'redis')

  const ask = async (app: typeof a, n: number): Promise<{ status: number, cache?: string }> => {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(n) })
    return { status: res.statusCode, cache: res.statusCode === 200 ? (res.json() as { cache: { status: string } }).cache.status : undefined }
  }

  t.same(await ask(a, 1), { status: 200, cache: 'miss' }, 'a miss through the master the Sentinels name')
  t.same(await ask(b, 1), { status: 200, cache: 'hit' }, 'the other instance reads it back')

  // Waiters on a build while Redis fails over: 40 requests for one key, over two instances.
  s.openai.setLatency(1500)
  const during = Promise.all(Array.from({ length: 40 }, async (_, i) => await ask(i % 2 === 0 ? a : b, 2)))
  await s.openai.waitForCalls(2)
  const oldMaster = await set.masterPort()
  const newMaster = await set.failover()
  t.not(newMaster, oldMaster, `the Sentinels promoted ${newMaster}`)
  const answers = await during
  t.ok(answers.every(r => r.status === 200), `every waiter answered 200 (${JSON.stringify(answers.filter(r => r.status !== 200))})`)
  t.ok(answers.every(r => r.cache !== 'fallback'), 'none fell back to the template')

  // The old master dies: the new one keeps serving, and writes land on it.
  await set.nodes.find(n => n.port === oldMaster)?.kill()
  s.openai.setLatency(0)
  for (const app of [a, b]) {
    const deadline = Date.now() + 15_000
    let answer = await ask(app, 3)
    while (answer.status !== 200 && Date.now() < deadline) answer = await ask(app, 3)
    t.equal(answer.status, 200, 'a new request is answered after the promotion')
  }
  // Both instances are on the new master now: a hit from Redis, not only from PostgreSQL.
  const deadline = Date.now() + 15_000
  let fromRedis = await ask(b, 4)
  while (Date.now() < deadline) {
    const again = await ask(b, 4)
    if (again.cache === 'hit') { fromRedis = again; break }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.equal(fromRedis.cache, 'hit', 'hits come from the new master')

  // A lock lost in the failover: instance a builds key 5; its lock vanishes (the
  // replica never saw it); instance b then wins a fresh Redis lock for the same
  // key. The build claim in PostgreSQL makes b wait for a's build instead of paying again.
  s.openai.setLatency(1500)
  const callsBefore = s.openai.calls
  const first = ask(a, 5)
  await s.openai.waitForCalls(callsBefore + 1)
  const keys = (await redisCli(newMaster, '-a', 'sentinel-test-pw', '--no-auth-warning', '--scan', '--pattern', lockKey(`${s.prefix}:*`))).split('\n').filter(Boolean)
  t.ok(keys.length >= 1, `the build's lock is on the new master (${keys.join(', ')})`)
  for (const key of keys) await redisCli(newMaster, '-a', 'sentinel-test-pw', '--no-auth-warning', 'DEL', key)
  const second = ask(b, 5)
  const both = await Promise.all([first, second])
  t.ok(both.every(r => r.status === 200), 'both answered')
  t.equal(s.openai.calls, callsBefore + 1, 'the key whose lock was lost is built once')

  for (const [prompt, n] of callsPerPrompt(s.openai.requests)) t.ok(n <= 1, `at most one model call per prompt (${n} for ${prompt.slice(0, 40)}…)`)
})

t.test('REDIS_URL: cluster seed URLs with credentials and TLS', async t => {
  t.same(loadConfig({ REDIS_URL: 'rediss://:s3cret@10.0.0.1:6379,rediss://10.0.0.2:6379' }).redis, {
    kind: 'cluster', seeds: [{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }], password: 's3cret', tls: {}
  })
  t.same(loadConfig({ REDIS_URL: '10.0.0.1:6379', REDIS_PASSWORD: 'pw', REDIS_TLS: 'on' }).redis, {
    kind: 'cluster', seeds: [{ host: '10.0.0.1', port: 6379 }], password: 'pw', tls: {}
  })
  t.throws(() => loadConfig({ REDIS_URL: 'redis://a:1,rediss://b:2' }), /REDIS_URL must be .*all redis:\/\/ or all rediss:\/\//)
  t.throws(() => loadConfig({ REDIS_URL: 'redis://a:1,b:2' }), /REDIS_URL must be .*not both kinds at once/)
  t.throws(() => loadConfig({ REDIS_PASSWORD: 'pw' }), /REDIS_PASSWORD must be unset when neither REDIS_URL nor REDIS_SENTINELS is set/)
  t.throws(() => loadConfig({ REDIS_URL: 'rediss://a:1', REDIS_TLS_CA: '/nonexistent/ca.pem' }), /REDIS_TLS_CA must be the path of a readable PEM file \(ENOENT/)
})

t.test('rediss:// with a password against a TLS-only redis-server, its CA from REDIS_TLS_CA', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'nc-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem')
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'redis.key', '-out', 'redis.csr')
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  ssl('x509', '-req', '-in', 'redis.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'redis.pem')
  const port = await freePort()
  // The plain port answers the starter's PING; the app is given the TLS port only.
  const server = await startRedis({ args: ['--tls-port', String(port), '--tls-cert-file', join(dir, 'redis.pem'), '--tls-key-file', join(dir, 'redis.key'), '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no'] })
  t.teardown(() => server.stop())
  await redisCli(server.port, 'CONFIG', 'SET', 'requirepass', 'tls-test-pw')
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_PASSWORD: 'tls-test-pw', REDIS_TLS_CA: join(dir, 'ca.pem') } })
  await app.store.ping()
  const first = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })
  const second = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyFor(7) })
  t.equal(first.json().cache.status, 'miss')
  t.equal(second.json().cache.status, 'hit', 'read back over TLS')
  t.equal(s.openai.calls, 1)
})
