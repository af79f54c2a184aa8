import { parseArgs } from 'node:util'

/**
 * npm run bench:abort-signal [-- --calls 30000]: is nodejs/node#55351 still
 * there on this Node? A long-lived signal combined with each call's deadline
 * through AbortSignal.any keeps every combined signal alive. Prints the heap
 * kept per call (after every deadline has fired and a forced GC) for that
 * pattern, and for a per-call AbortController that follows the long-lived
 * signal with a listener removed when the call ends (src/narrator/retry.ts).
 * Needs --expose-gc (the npm script passes it).
 */
const { values } = parseArgs({ options: { calls: { type: 'string', default: '30000' } } })
const calls = Number(values.calls)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 300)); gc(); gc() }

async function keptPerCall (oneCall: (longLived: AbortSignal) => void): Promise<number> {
  const longLived = new AbortController().signal
  await settle()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < calls; i++) oneCall(longLived)
  await settle()
  return (process.memoryUsage().heapUsed - before) / calls
}

const withAny = await keptPerCall(longLived => {
  AbortSignal.any([AbortSignal.timeout(1), longLived]).addEventListener('abort', () => {})
})
const withController = await keptPerCall(longLived => {
  const controller = new AbortController()
  const follow = (): void => { controller.abort(longLived.reason) }
  longLived.addEventListener('abort', follow, { once: true })
  const timer = setTimeout(() => { controller.abort() }, 1)
  controller.signal.addEventListener('abort', () => {})
  clearTimeout(timer)
  longLived.removeEventListener('abort', follow)
})
process.stdout.write(`Node ${process.version}, ${calls} calls: heap kept per call, AbortSignal.any with a long-lived signal ${Math.round(withAny)} bytes; per-call controller ${Math.round(withController)} bytes\n`)
