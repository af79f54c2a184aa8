// Without JWT_SECRET, outside production, the server keeps its admin token
// secret in DATA_DIR (mode 0600) and `npm run token` mints tokens it accepts,
// so a newcomer reaches the admin routes without a restart. Also: an
// Authorization header without its scheme is named as such.
import t from 'tap'
import { spawn, execFile } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { adminTokenSecret, developmentSecret, DEVELOPMENT_SECRET_FILE } from '../src/admin/development-secret.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { build } from './helper.ts'
import { freePort } from './support/ports.ts'
import { waitUntil } from './support/wait.ts'

const run = promisify(execFile)

t.test('the development secret is created once, mode 0600, and kept', async t => {
  const dir = t.testdir()
  const first = developmentSecret(dir)
  t.ok(first.created)
  t.ok(first.secret.length >= 32)
  t.equal(statSync(first.file).mode & 0o777, 0o600, 'only its owner can read it')
  const again = developmentSecret(dir)
  t.notOk(again.created)
  t.equal(again.secret, first.secret, 'the same secret at the next start')
  t.equal(adminTokenSecret({ jwtSecret: 'x'.repeat(40), production: false, dataDir: dir }).secret, 'x'.repeat(40), 'JWT_SECRET wins when set')
  t.throws(() => adminTokenSecret({ jwtSecret: undefined, production: true, dataDir: dir }), /JWT_SECRET must be set in production/)
})

t.test('a file that holds no usable secret is named, its content never shown', async t => {
  const dir = t.testdir({ [DEVELOPMENT_SECRET_FILE]: 'short-secret-value\n' })
  let message = ''
  try { developmentSecret(dir) } catch (err) { message = (err as Error).message }
  t.match(message, join(dir, DEVELOPMENT_SECRET_FILE), 'the file is named')
  t.notMatch(message, 'short-secret-value', 'its content is not')
})

t.test('a server started without JWT_SECRET accepts what npm run token mints, with no restart', async t => {
  const dataDir = t.testdir()
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' }
  for (const name of ['JWT_SECRET', 'NODE_ENV', 'REDIS_URL', 'DATABASE_URL', 'OPENAI_API_KEY']) delete env[name]
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(async () => { if (server.exitCode === null) { server.kill('SIGKILL'); await once(server, 'exit') } })
  let log = ''
  server.stdout?.on('data', (d: Buffer) => { log += d.toString() })
  server.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined))?.ok === true, { timeoutMs: 60_000, what: 'the server' })

  const secretFile = join(dataDir, DEVELOPMENT_SECRET_FILE)
  const secret = readFileSync(secretFile, 'utf8').trim()
  t.match(log, secretFile, 'the start-up log says where the secret is')
  t.notMatch(log, secret, 'and never the secret itself')

  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/token.ts', '--sub', 'newcomer', '--ttl', '1h'], { env })
  const token = stdout.trim()
  const stats = await fetch(`http://127.0.0.1:${port}/api/narrative/stats`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(stats.status, 200, 'the minted token opens the admin routes')
  server.kill('SIGTERM')
  await once(server, 'exit')
})

t.test('Authorization without "Bearer " says so', async t => {
  const secret = 'development-secret-test-secret-000000000'
  const app = await build(t, { env: { JWT_SECRET: secret } })
  const token = mintAdminToken(secret, 'alice', 600)
  const res = await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: { authorization: token } })
  t.equal(res.statusCode, 401)
  t.match(res.json().message, /the Authorization header is not "Bearer <token>"/)
  const ok = await app.inject({ method: 'GET', url: '/api/narrative/stats', headers: { authorization: `Bearer ${token}` } })
  t.equal(ok.statusCode, 200)
})
