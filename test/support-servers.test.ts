// Proves the real-process helpers in test/support/ work: Redis (single and
// cluster), PostgreSQL, the env helpers and the with-servers wrapper.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import t from 'tap'
import { sharedDatabaseUrl, sharedRedisUrl, uniqueDatabaseUrl, uniquePrefix } from './support/env.ts'
import { freePort } from './support/ports.ts'
import { psql, startPostgres } from './support/postgres-server.ts'
import { isProcessAlive } from './support/reaper.ts'
import { pingRedis, redisCli, startRedis, startRedisCluster } from './support/redis-server.ts'

const execFileP = promisify(execFile)

// zombie-aware: a killed postmaster is re-parented to PID 1 and may linger as a zombie
const alive = isProcessAlive

/** Sends PING on a raw socket; resolves with the reply, or 'timeout'. */
const rawPing = (port: number, ms: number): Promise<string> => new Promise(resolve => {
  const s = connect({ port, host: '127.0.0.1' }, () => s.write('PING\r\n'))
  const timer = setTimeout(() => { s.destroy(); resolve('timeout') }, ms)
  s.on('data', d => { clearTimeout(timer); s.destroy(); resolve(d.toString().trim()) })
  s.on('error', e => { clearTimeout(timer); resolve(`error ${e.message}`) })
})

t.test('freePort returns a bindable port', async t => {
  const p = await freePort()
  t.ok(p > 0 && p < 65536)
})

t.test('uniquePrefix', async t => {
  const a = uniquePrefix('narrative cache!')
  t.match(a, /^t[a-z0-9]+$/)
  t.ok(a.length <= 13, a)
  t.not(uniquePrefix('x'), uniquePrefix('x'))
})

t.test('redis: start, set/get, freeze/thaw, kill/restart, stop', async t => {
  const r = await startRedis()
  t.teardown(() => r.stop())
  t.equal(r.url, `redis://127.0.0.1:${r.port}`)
  t.equal(await redisCli(r.port, 'SET', 'k', 'v'), 'OK')
  t.equal(await redisCli(r.port, 'GET', 'k'), 'v')
  t.equal(await redisCli(r.port, 'CONFIG', 'GET', 'save'), 'save\n', 'persistence off')

  r.freeze()
  t.equal(await rawPing(r.port, 200), 'timeout', 'frozen: connects but never answers')
  r.thaw()
  t.equal(await rawPing(r.port, 2000), '+PONG', 'thawed')

  const oldPid = r.pid
  await r.kill()
  t.notOk(alive(oldPid), 'killed')
  t.notOk(await pingRedis(r.port, 200), 'port closed after kill')
  await r.restart()
  t.not(r.pid, oldPid, 'new process')
  t.equal(await redisCli(r.port, 'GET', 'k'), '', 'data gone after a crash (no persistence)')
  await redisCli(r.port, 'SET', 'k2', 'v2')
  await r.flushall()
  t.equal(await redisCli(r.port, 'DBSIZE'), '0', 'flushall')

  // killing a frozen server must work too
  r.freeze()
  await r.kill()
  await r.restart()
  t.equal(await redisCli(r.port, 'PING'), 'PONG')

  const dir = r.dir
  const pid = r.pid
  await r.stop()
  t.notOk(alive(pid), 'stopped')
  t.notOk(existsSync(dir), 'temp dir removed')
  await r.stop() // idempotent
})

t.test('redis: a port already in use fails fast with the server output', async t => {
  const r = await startRedis()
  t.teardown(() => r.stop())
  const started = Date.now()
  await t.rejects(startRedis({ port: r.port }), /did not start[\s\S]*(Address already in use|Could not create)/)
  t.ok(Date.now() - started < 5000, 'did not wait for the full timeout')
})

t.test('redis cluster comes up with cluster_state:ok', async t => {
  const c = await startRedisCluster()
  t.teardown(() => c.stop())
  t.equal(c.nodes.length, 3)
  t.equal(c.seeds, c.nodes.map(n => `127.0.0.1:${n.port}`).join(','))
  for (const n of c.nodes) t.match(await redisCli(n.port, 'cluster', 'info'), /cluster_state:ok/)
  // -c follows MOVED redirects, so any key works from any node
  t.equal(await redisCli(c.nodes[0].port, '-c', 'SET', 'foo', 'bar'), 'OK')
  t.equal(await redisCli(c.nodes[1].port, '-c', 'GET', 'foo'), 'bar')
  t.match(await redisCli(c.nodes[2].port, 'cluster', 'info'), /cluster_slots_assigned:16384/)
})

t.test('postgres: start, query, createDatabase, freeze/thaw, kill/restart, stop', async t => {
  const pg = await startPostgres()
  t.teardown(() => pg.stop())
  t.equal(pg.url, `postgres://postgres@127.0.0.1:${pg.port}/postgres`)
  const { stdout } = await execFileP('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(pg.port),
    '-U', 'postgres', '-c', 'select 1'])
  t.equal(stdout.trim(), '1', "psql -c 'select 1'")

  const dbUrl = await pg.createDatabase('narratives_test')
  t.equal(dbUrl, `postgres://postgres@127.0.0.1:${pg.port}/narratives_test`)
  t.equal(await psql(dbUrl, 'select current_database()'), 'narratives_test')
  await t.rejects(pg.createDatabase('bad"; drop'), /invalid database name/)

  pg.freeze()
  await t.rejects(
    execFileP('psql', ['-X', '-d', pg.url, '-c', 'select 1'], { timeout: 500 }),
    'frozen: queries hang'
  )
  pg.thaw()
  t.equal(await psql(pg.url, 'select 2'), '2', 'thawed')

  await psql(dbUrl, 'create table kept (v int); insert into kept values (42)')
  const oldPid = pg.pid
  await pg.kill()
  t.notOk(alive(oldPid), 'postmaster killed')
  await pg.restart()
  t.equal(await psql(dbUrl, 'select v from kept'), '42', 'data survives a crash (crash recovery)')

  const dir = pg.dir
  await pg.stop()
  t.notOk(existsSync(dir), 'temp dir removed')
})

t.test('env helpers', async t => {
  const redisUrl = await sharedRedisUrl(t)
  t.match(redisUrl, /^redis:\/\/127\.0\.0\.1:\d+$/)
  t.equal(await sharedRedisUrl(t), redisUrl, 'memoized')
  t.equal(await redisCli(Number(new URL(redisUrl).port), 'PING'), 'PONG')

  const dbUrl = await sharedDatabaseUrl(t)
  t.equal(await psql(dbUrl, 'select 1'), '1')
  const fresh = await uniqueDatabaseUrl(t)
  t.match(fresh, /\/tdb[a-z0-9]+$/)
  t.equal(await psql(fresh, 'select count(*) from pg_tables where schemaname = \'public\''), '0')
})

t.test('with-servers wrapper exports the env and the exit code', async t => {
  const script = [
    'const e = process.env;',
    'if (!/^redis:/.test(e.TEST_REDIS_URL) || !/^postgres:/.test(e.TEST_DATABASE_URL)) process.exit(9);',
    "if (e.TEST_REDIS_URL !== 'redis://127.0.0.1:' + e.TEST_REDIS_PORT || !(+e.TEST_REDIS_PID > 0)) process.exit(8);",
    'console.log(JSON.stringify({ r: e.TEST_REDIS_URL, p: e.TEST_REDIS_PID, d: e.TEST_DATABASE_URL }));',
    'process.exit(3)'
  ].join('\n')
  // start from a clean env so the wrapper starts its own servers
  const env = { ...process.env }
  delete env.TEST_REDIS_URL
  delete env.TEST_DATABASE_URL
  const res = await execFileP('npx', ['tsx', 'test/support/with-servers.ts', process.execPath, '-e', script], { env })
    .then(() => ({ code: 0, stdout: '' }), (e: { code: number, stdout: string, stderr: string }) => e)
  t.equal(res.code, 3, 'exit code propagated')
  const seen = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}')
  t.notOk(alive(Number(seen.p)), 'redis stopped after the command')
  t.notOk(await pingRedis(Number(new URL(seen.r).port), 200), 'redis port closed')
  await t.rejects(psql(seen.d, 'select 1'), 'postgres stopped after the command')
})
