// Makes sure test servers never outlive the Node process that started them.
//
// Two layers, because neither is enough alone:
//  1. process.on('exit'): synchronous, immediate clean-up on a normal exit
//     (including process.exit()). It does NOT run when the process dies from
//     a signal (tap kills timed-out test files with SIGALRM, then SIGKILL).
//  2. a detached `sh` watchdog whose stdin is a pipe from this process. When
//     this process dies for ANY reason, the kernel closes the pipe, the
//     watchdog's `read` hits EOF, and it kills/removes whatever is listed in
//     a small state file we keep up to date. No polling, ~1 MB of memory.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * - `pid`: a single process (redis-server): SIGCONT + SIGKILL.
 * - `pgtree`: a PostgreSQL postmaster. Its backends are NOT in its process
 *   group (each calls setsid), so we stop the postmaster (no respawns), kill
 *   its direct children, then kill it.
 * - `dir`: a temp directory to remove after the processes are dead.
 */
export type TrackKind = 'pid' | 'pgtree' | 'dir'

const entries = new Map<number, { kind: TrackKind, value: string }>()
let nextId = 1
let stateFile: string | undefined

const WATCHDOG = `
list="$1"
while read -r _ignored; do :; done   # returns at EOF, i.e. when the parent died
[ -f "$list" ] || exit 0
while read -r kind val; do
  case "$kind" in
    pid) kill -CONT "$val"; kill -KILL "$val" ;;
    pgtree)
      kill -STOP "$val"
      for c in $(ps -o pid= --ppid "$val" 2>/dev/null); do kill -CONT "$c"; kill -KILL "$c"; done
      kill -KILL "$val" ;;
  esac
done < "$list" 2>/dev/null
sleep 0.2
while read -r kind val; do
  [ "$kind" = dir ] && rm -rf "$val"
done < "$list"
rm -f "$list"
`

function ensureStarted (): string {
  if (stateFile) return stateFile
  stateFile = join(tmpdir(), `nc-test-reaper-${process.pid}-${Date.now().toString(36)}.list`)
  writeFileSync(stateFile, '')
  // detached: own session, so a terminal Ctrl-C (SIGINT to the foreground
  // process group) does not kill the watchdog before it can clean up.
  const dog = spawn('sh', ['-c', WATCHDOG, 'reaper', stateFile], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore']
  })
  dog.on('error', () => { /* best effort: the exit hook still works */ })
  dog.unref();
  // the pipe must not keep the event loop alive either
  (dog.stdin as unknown as Socket).unref?.()
  process.on('exit', reapSync)
  return stateFile
}

function persist (): void {
  const file = ensureStarted()
  const lines = [...entries.values()].map(e => `${e.kind} ${e.value}\n`).join('')
  try { writeFileSync(file, lines) } catch { /* tmp dir gone: nothing to do */ }
}

/** Registers something to clean up if we die; returns the "untrack" function. */
export function track (kind: TrackKind, value: string | number): () => void {
  const id = nextId++
  entries.set(id, { kind, value: String(value) })
  persist()
  return () => {
    if (entries.delete(id)) persist()
  }
}

/** Direct children of `pid`, read from /proc (Linux only; [] elsewhere). */
export function childPids (pid: number): number[] {
  const out: number[] = []
  let names: string[]
  try { names = readdirSync('/proc') } catch { return out }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // "pid (comm) state ppid ..." - comm may contain spaces and ')'
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(rest[1]) === pid) out.push(Number(name))
    } catch { /* process vanished meanwhile */ }
  }
  return out
}

/**
 * True if `pid` exists and is not a zombie. A killed daemon (e.g. a postmaster,
 * re-parented to PID 1) can stay a zombie for a while, and a zombie still
 * answers kill(pid, 0), which would fool both us and PostgreSQL's lock file check.
 */
export function isProcessAlive (pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    try { process.kill(pid, 0); return true } catch { return false }
  }
}

function signal (pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig) } catch { /* already gone */ }
}

/** Synchronous clean-up for the 'exit' event (no async work possible there). */
function reapSync (): void {
  const all = [...entries.values()]
  for (const e of all) {
    const pid = Number(e.value)
    if (e.kind === 'pid') {
      signal(pid, 'SIGCONT')
      signal(pid, 'SIGKILL')
    } else if (e.kind === 'pgtree') {
      signal(pid, 'SIGSTOP')
      for (const c of childPids(pid)) { signal(c, 'SIGCONT'); signal(c, 'SIGKILL') }
      signal(pid, 'SIGKILL')
    }
  }
  for (const e of all) {
    if (e.kind === 'dir') {
      try { rmSync(e.value, { recursive: true, force: true, maxRetries: 3 }) } catch { /* best effort */ }
    }
  }
  entries.clear()
  if (stateFile) {
    try { unlinkSync(stateFile) } catch { /* ignore */ }
  }
}
