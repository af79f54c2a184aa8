import { readdirSync, readFileSync } from 'node:fs'

/** USER_HZ: /proc reports CPU time in these ticks; 100 on every Linux build we run on (getconf CLK_TCK). */
const TICKS_PER_SECOND = 100

/** CPU seconds (user + system) used so far by a process and all its descendants still alive. */
export function treeCpuSeconds (rootPid: number): number {
  const parentOf = new Map<number, number>()
  const ticks = new Map<number, number>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // Fields after "(comm)": state ppid ... utime (12th) stime (13th).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      parentOf.set(Number(name), Number(fields[1]))
      ticks.set(Number(name), Number(fields[11]) + Number(fields[12]))
    } catch { /* gone meanwhile */ }
  }
  let total = 0
  for (const [pid, t] of ticks) {
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parentOf.get(p)) {
      if (p === rootPid) { total += t; break }
    }
  }
  return total / TICKS_PER_SECOND
}
