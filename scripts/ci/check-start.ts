// CI: `npm start` builds only when the sources changed, and refuses a bad
// variable before building anything. From a state like a fresh clone (no dist/):
//   1. PORT=abc is refused within 3 s, and nothing is built;
//   2. the first start builds, then answers /health and a narrative (figures printed);
//   3. the second start does not build and answers /health within 3 s;
//   4. PORT=abc is refused within 3 s with the build up to date, and with it stale.
// Every start is on the embedded defaults (no Redis, PGlite in a temporary DATA_DIR).
// Usage: tsx scripts/ci/check-start.ts [--keep-dist]
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NARRATIVE_BODY, freePort, start, waitForOk } from './serve.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const LIMIT_MS = Number(process.env.START_LIMIT_MS ?? 3000)
const stamp = join(root, 'dist', '.build-stamp')
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
  check(!/compiling/.test(run.output()), `${label}: nothing was built`)
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
  if (!process.argv.includes('--keep-dist')) await rm(join(root, 'dist'), { recursive: true, force: true })
  if (!existsSync(join(root, 'dist'))) {
    await refused('no build yet', dataDir)
    check(!existsSync(join(root, 'dist', 'src', 'server.js')), 'no build yet: dist/ was not created')
  }
  const first = await serve('first start', join(dataDir, 'data'), 180_000)
  check(existsSync(stamp), 'the first start leaves dist/.build-stamp')
  const second = await serve('second start', join(dataDir, 'data'), 60_000)
  check(!/compiling/.test(second), 'the second start does not build')
  const secondHealth = figures.find(([what]) => what === 'second start: /health answered')?.[1] ?? ''
  check(Number.parseFloat(secondHealth) * 1000 <= LIMIT_MS, `the second start answers /health within ${LIMIT_MS} ms (${secondHealth})`)
  const built = /Built with (\S+) in ([\d.]+ s)/.exec(first)
  if (built !== null) figures.push(['first start: the build', `${built[2]} (${built[1]})`])
  await refused('build up to date', dataDir)
  // Stale: a stamp that no longer matches the sources. The refusal still comes before any build.
  const saved = await readFile(stamp, 'utf8')
  await writeFile(stamp, 'stale\n')
  try {
    await refused('sources changed', dataDir)
    check(await readFile(stamp, 'utf8') === 'stale\n', 'sources changed: the refusal built nothing')
  } finally {
    await writeFile(stamp, saved)
  }
} finally {
  await rm(dataDir, { recursive: true, force: true })
}

process.stdout.write('\n' + figures.map(([what, value]) => `  ${what.padEnd(42)} ${value}`).join('\n') + '\n')
if (failures.length > 0) {
  process.stdout.write(`\ncheck-start: ${failures.length} check(s) failed\n`)
  process.exit(1)
}
process.stdout.write('\ncheck-start: ok\n')
