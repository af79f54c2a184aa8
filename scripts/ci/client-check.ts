// The typed client in client/, checked against the committed document:
//   npm run client:generate   writes client/openapi.d.ts from openapi/openapi.json
//   npm run client:check      (CI) fails when client/openapi.d.ts differs from what
//                             openapi-typescript generates now; compiles client/
//                             (every-operation.ts calls every operation, without a cast);
//                             runs client/example.ts (with an admin token) against a server
//                             started on the embedded defaults (no Redis, PGlite in a
//                             temporary folder).
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import openapiTS, { COMMENT_HEADER, astToString } from 'openapi-typescript'
import { freePort, start, waitForOk } from './serve.ts'
import { mintAdminToken } from '../../src/admin/token.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const typesFile = join(root, 'client', 'openapi.d.ts')

/** What `openapi-typescript` (the CLI, configured by redocly.yaml) writes for the committed document. */
async function generatedTypes (): Promise<string> {
  const ast = await openapiTS(new URL('../../openapi/openapi.json', import.meta.url), { silent: true })
  return COMMENT_HEADER + astToString(ast)
}

function fail (message: string): never {
  process.stderr.write(`client:check: ${message}\n`)
  process.exit(1)
}

if (process.argv.includes('--write')) {
  await writeFile(typesFile, await generatedTypes())
  process.stdout.write(`wrote ${typesFile}\n`)
  process.exit(0)
}

// 1. No drift between the document and the committed types.
const committed = await readFile(typesFile, 'utf8').catch(() => '')
if (committed !== await generatedTypes()) fail('client/openapi.d.ts is not what openapi-typescript generates from openapi/openapi.json: run `npm run client:generate` and commit it')
process.stdout.write('ok: client/openapi.d.ts matches openapi/openapi.json\n')

// 2. The client compiles, with one call of every operation and no cast.
const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'client', 'tsconfig.json')], { stdio: 'inherit' })
if (tsc.status !== 0) fail('client/ does not compile (see above)')
process.stdout.write('ok: client/ compiles (every operation called in client/every-operation.ts)\n')

// 3. The example runs against a real server on the embedded defaults.
const dataDir = await mkdtemp(join(tmpdir(), 'client-check-'))
const port = await freePort()
const baseUrl = `http://127.0.0.1:${port}`
const secret = 'client-check-secret-0123456789-abcdefghij'
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', JWT_SECRET: secret }
const server = start(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: root, env })
try {
  await waitForOk(`${baseUrl}/health`, server, 120_000)
  // With an admin token, so the wrapper's bearer middleware is exercised too (GET /api/narrative/stats).
  const adminToken = mintAdminToken(secret, 'client-check', 600)
  const example = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'client', 'example.ts'), baseUrl], { cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ADMIN_TOKEN: adminToken } })
  process.stdout.write(example.stdout)
  process.stderr.write(example.stderr)
  if (example.status !== 0) fail(`client/example.ts failed (exit ${example.status})`)
  if (!/^health: ok$/m.test(example.stdout) || !/^narrative \((miss|hit|durable|stale|fallback), X-Cache [A-Z]+, key /m.test(example.stdout)) fail('client/example.ts did not print the health and the narrative')
  if (!/^stats: hit rate /m.test(example.stdout)) fail('client/example.ts did not reach the admin stats with the token')
  process.stdout.write('ok: client/example.ts ran against the server\n')
} finally {
  await server.stop()
  await rm(dataDir, { recursive: true, force: true })
}
