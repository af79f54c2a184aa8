// Test-run wrapper: `tsx test/support/with-servers.ts <command> [args...]`
// (e.g. `npm test` = `tsx test/support/with-servers.ts tap`).
//
// Starts ONE redis-server and ONE PostgreSQL for the whole run (instead of
// one per test file, which would be slow on a small machine), exports
//   TEST_REDIS_URL, TEST_REDIS_PORT, TEST_REDIS_PID, TEST_DATABASE_URL
// to the command, runs it with inherited stdio, stops both servers and exits
// with the command's exit code. Variables that are already set are reused
// (no server of that kind is started).
import { spawn } from 'node:child_process'
import { constants } from 'node:os'
import { delimiter, resolve } from 'node:path'
import { type PostgresProc, startPostgres } from './postgres-server.ts'
import { type RedisProc, startRedis } from './redis-server.ts'

async function main (): Promise<number> {
  const [cmd, ...args] = process.argv.slice(2)
  if (!cmd) {
    // tap's default include globs match every file under test/, so this file
    // can end up being "run as a test" with no arguments: say so in TAP.
    if (process.env.TAP_CHILD_ID !== undefined) {
      console.log('1..0 # with-servers.ts is the test-run wrapper, not a test')
      return 0
    }
    console.error('usage: tsx test/support/with-servers.ts <command> [args...]')
    return 2
  }

  let redis: RedisProc | undefined
  let pg: PostgresProc | undefined
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled([redis?.stop(), pg?.stop()])
  }

  // Start both in parallel; on failure stop whichever did start.
  const [r, p] = await Promise.allSettled([
    process.env.TEST_REDIS_URL ? undefined : startRedis(),
    process.env.TEST_DATABASE_URL ? undefined : startPostgres()
  ])
  if (r.status === 'fulfilled') redis = r.value
  if (p.status === 'fulfilled') pg = p.value
  if (r.status === 'rejected' || p.status === 'rejected') {
    await stopAll()
    for (const x of [r, p]) if (x.status === 'rejected') console.error(x.reason)
    return 1
  }

  const env: NodeJS.ProcessEnv = { ...process.env }
  if (redis) {
    env.TEST_REDIS_URL = redis.url
    env.TEST_REDIS_PORT = String(redis.port)
    env.TEST_REDIS_PID = String(redis.pid)
  }
  if (pg) env.TEST_DATABASE_URL = pg.url
  // so `tap` resolves when this wrapper is run with plain tsx (not via npm)
  env.PATH = [resolve('node_modules/.bin'), env.PATH].filter(Boolean).join(delimiter)

  const child = spawn(cmd, args, { stdio: 'inherit', env })

  // Forward SIGINT/SIGTERM to the command and let the normal path below stop
  // the servers. A second signal, or a command that ignores it for 10 s,
  // gets SIGKILL.
  let signalled = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signalled++
    if (signalled > 1) { child.kill('SIGKILL'); return }
    child.kill(sig)
    setTimeout(() => child.kill('SIGKILL'), 10_000).unref()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  const code = await new Promise<number>(resolve => {
    child.once('error', err => { console.error(`with-servers: cannot run ${cmd}: ${err.message}`); resolve(127) })
    child.once('exit', (code, sig) => {
      resolve(code ?? 128 + (sig ? (constants.signals[sig] ?? 0) : 0))
    })
  })
  await stopAll()
  return code
}

main().then(
  code => process.exit(code),
  err => { console.error(err); process.exit(1) }
)
