// Shared by the CI checks in scripts/ci: start a command that serves HTTP in a
// process group of its own, wait for it to answer, stop the whole group.
import { spawn, type ChildProcess } from 'node:child_process'
// The test suite's free-port finder: one implementation for tests and CI checks.
export { freePort } from '../../test/support/ports.ts'

export interface Started {
  child: ChildProcess
  /** Everything written to stdout and stderr so far. */
  output: () => string
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>
  /** SIGTERM to the whole group, then SIGKILL after `graceMs`; resolves once exited. */
  stop: (graceMs?: number) => Promise<number | string>
}

/** Runs `command args` in `cwd` with exactly `env`, in a process group of its own. */
export function start (command: string, args: string[], options: { cwd: string, env: NodeJS.ProcessEnv }): Started {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', chunk => { output += String(chunk) })
  child.stderr?.on('data', chunk => { output += String(chunk) })
  const exited = new Promise<number | string>(resolve => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
    child.once('error', err => { output += `spawn failed: ${err.message}\n`; resolve('spawn-error') })
  })
  const signalGroup = (signal: NodeJS.Signals): void => {
    try { if (child.pid !== undefined) process.kill(-child.pid, signal) } catch { /* already gone */ }
  }
  const stop = async (graceMs = 10_000): Promise<number | string> => {
    if (child.exitCode === null && child.signalCode === null) signalGroup('SIGTERM')
    const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs)
    const code = await exited
    clearTimeout(timer)
    signalGroup('SIGKILL') // anything of the group still there
    return code
  }
  // This process dying must not leave the server running.
  process.once('exit', () => signalGroup('SIGKILL'))
  return { child, output: () => output, exited, stop }
}

/**
 * Polls GET `url` until it answers 200; resolves with the milliseconds waited.
 * Rejects when the process exits first or `timeoutMs` passes.
 */
export async function waitForOk (url: string, started: Started, timeoutMs: number): Promise<number> {
  const t0 = performance.now()
  let exitedWith: number | string | undefined
  started.exited.then(code => { exitedWith = code }, () => {})
  for (;;) {
    if (exitedWith !== undefined) throw new Error(`the process exited (${exitedWith}) before ${url} answered:\n${started.output()}`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
      await res.arrayBuffer()
      if (res.ok) return performance.now() - t0
    } catch { /* not yet */ }
    if (performance.now() - t0 > timeoutMs) throw new Error(`${url} did not answer within ${timeoutMs} ms:\n${started.output()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** The body of the narrative checks: a primary profile, as the README's example. */
export const NARRATIVE_BODY = { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 50, Sirius: 20 } }, locale: 'en' }
