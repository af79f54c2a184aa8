// CI: `npm start` runs the TypeScript sources on Node 24 (type stripping), with
// no build step. From a state like a fresh clone (no dist/, a new DATA_DIR):
//   1. PORT=abc is refused within 3 s, and nothing is built;
//   2. the first start answers /health and a narrative within 15 s (figures printed);
//   3. the second start answers /health within 3 s.
// Every start is on the embedded defaults (no Redis, PGlite in a temporary DATA_DIR).
// Usage: tsx scripts/ci/check-start.ts
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NARRATIVE_BODY, freePort, start, waitForOk } from './serve.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const LIMIT_MS = Number(process.env.START_LIMIT_MS ?? 3000)
const FIRST_LIMIT_MS = Number(process.env.FIRST_START_LIMIT_MS ?? 15_000)
const failures: string[] = []
const figures: Array<[string, string]> = []

function check (ok: boolean, what: string): void {
  process.stdout.write(`${ok ? 'ok' : 'NOT OK'}: ${what}\n`)
  if (!ok) failures.push(what)
}

/** Only what a user's shell would carry: none of the server's own variables. */
function cleanEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TERM']) if (process.env[name] !== undefined) env[name] = process.env[name]
  return { ...env, LOG_LEVEL: 'info', ...extra }
}

async function refused (label: string, dataDir: string): Promise<void> {
  const t0 = performance.now()
  const run = start('npm', ['start'], { cwd: root, env: cleanEnv({ PORT: 'abc', DATA_DIR: dataDir }) })
  const timer = setTimeout(() => { run.stop().catch(() => {}) }, 30_000)
  const code = await run.exited
  clearTimeout(timer)
  const ms = performance.now() - t0
  figures.push([`PORT=abc refused (${label})`, `${(ms / 1000).toFixed(2)} s`])
  check(code !== 0, `${label}: PORT=abc exits non-zero (${code})`)
  check(/PORT must be a TCP port number/.test(run.output()), `${label}: the message names PORT`)
  check(ms <= LIMIT_MS, `${label}: refused within ${LIMIT_MS} ms (${Math.round(ms)} ms)`)
}

async function serve (label: string, dataDir: string, timeoutMs: number): Promise<string> {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const t0 = performance.now()
  const run = start('npm', ['start'], { cwd: root, env: cleanEnv({ PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir }) })
  try {
    try {
      await waitForOk(`${base}/health`, run, timeoutMs)
    } catch (err) {
      check(false, `${label}: answers /health: ${(err as Error).message}`)
      return run.output()
    }
    const healthMs = performance.now() - t0
    const res = await fetch(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(NARRATIVE_BODY) })
    const body = await res.json() as { cache?: { status?: string } }
    const answerMs = performance.now() - t0
    figures.push([`${label}: /health answered`, `${(healthMs / 1000).toFixed(2)} s`], [`${label}: first narrative answered`, `${(answerMs / 1000).toFixed(2)} s (${body.cache?.status})`])
    check(res.status === 200 && typeof body.cache?.status === 'string', `${label}: POST /api/narrative answers 200 with a narrative`)
    return run.output()
  } finally {
    await run.stop()
  }
}

const dataDir = await mkdtemp(join(tmpdir(), 'check-start-'))
try {
  await rm(join(root, 'dist'), { recursive: true, force: true })
  await refused('a fresh clone', dataDir)
  check(!existsSync(join(root, 'dist')), 'nothing was built: no dist/')
  await serve('first start', join(dataDir, 'data'), 180_000)
  const firstAnswer = figures.find(([what]) => what === 'first start: first narrative answered')?.[1] ?? ''
  check(Number.parseFloat(firstAnswer) * 1000 <= FIRST_LIMIT_MS, `the first start answers a narrative within ${FIRST_LIMIT_MS} ms (${firstAnswer})`)
  await serve('second start', join(dataDir, 'data'), 60_000)
  const secondHealth = figures.find(([what]) => what === 'second start: /health answered')?.[1] ?? ''
  check(Number.parseFloat(secondHealth) * 1000 <= LIMIT_MS, `the second start answers /health within ${LIMIT_MS} ms (${secondHealth})`)
  check(!existsSync(join(root, 'dist')), 'no start built anything: no dist/')
} finally {
  await rm(dataDir, { recursive: true, force: true })
}

process.stdout.write('\n' + figures.map(([what, value]) => `  ${what.padEnd(42)} ${value}`).join('\n') + '\n')
if (failures.length > 0) {
  process.stdout.write(`\ncheck-start: ${failures.length} check(s) failed\n`)
  process.exit(1)
}
process.stdout.write('\ncheck-start: ok\n')
