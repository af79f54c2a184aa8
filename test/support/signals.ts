import { getEventListeners } from 'node:events'

/**
 * What a signal keeps alive on behalf of others: its 'abort' listeners, and
 * the signals AbortSignal.any made dependent on it. Node keeps those in an
 * internal set that lives as long as the source signal (nodejs/node#55351);
 * it is read here through its symbol, and counts 0 where there is none.
 */
export function heldBy (signal: AbortSignal): { listeners: number, dependents: number } {
  const symbol = Object.getOwnPropertySymbols(signal).find(s => s.description === 'kDependantSignals')
  const dependents = symbol === undefined ? undefined : (signal as unknown as Record<symbol, Set<unknown> | undefined>)[symbol]
  return { listeners: getEventListeners(signal, 'abort').length, dependents: dependents?.size ?? 0 }
}
