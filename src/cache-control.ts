/**
 * A request's Cache-Control (RFC 9111's request directives), as both the
 * chat completions and the narratives honour it. Pure: who may use which
 * directive is the route's decision.
 */

/** The request's Cache-Control directives this server honours (RFC 9111 names). */
export interface CacheControl {
  /** Ask the upstream again and replace the entry. */
  noCache: boolean
  /** Neither read nor write the cache: straight to the upstream. */
  noStore: boolean
  /** Accept only an entry younger than this many seconds. */
  maxAge?: number
  /** 504 rather than ask the upstream. */
  onlyIfCached: boolean
  /** Accept an entry at most this many seconds past its freshness (it is refreshed in the background). */
  maxStale?: number
  /** When the upstream fails or rate-limits, answer with an entry at most this many seconds past its freshness. */
  staleIfError?: number
}

export class CacheControlError extends Error {
  override readonly name: string = 'CacheControlError'
}

/** Parses Cache-Control; an unknown directive is ignored (as HTTP says), a malformed known one is refused. */
export function parseCacheControl (header: string | undefined): CacheControl {
  const out: CacheControl = { noCache: false, noStore: false, onlyIfCached: false }
  if (header === undefined || header.trim() === '') return out
  for (const part of header.split(',')) {
    const [rawName, ...rest] = part.trim().split('=')
    const name = rawName.trim().toLowerCase()
    const value = rest.join('=').trim().replace(/^"(.*)"$/, '$1')
    if (name === 'no-cache') out.noCache = true
    else if (name === 'no-store') out.noStore = true
    else if (name === 'only-if-cached') out.onlyIfCached = true
    else if (name === 'max-age') out.maxAge = seconds(name, value)
    // Without a value (no `=`), RFC 9111: a stale entry of any age will do, as with no directive.
    else if (name === 'max-stale' && rest.length > 0) out.maxStale = seconds(name, value)
    else if (name === 'stale-if-error') out.staleIfError = seconds(name, value)
  }
  return out
}

function seconds (name: string, value: string): number {
  if (!/^[0-9]{1,10}$/.test(value)) throw new CacheControlError(`Cache-Control ${name} must be a whole number of seconds, got "${value}"`)
  return Number(value)
}

/**
 * The oldest entry a request takes, as a write time (ms): `no-cache` none
 * (its own start), `max-age=N` N s old, `max-stale=N` N s past freshness
 * (`freshMs` after its write); undefined when any entry does.
 */
export function oldestAccepted (control: CacheControl, now: number, freshMs: number): number | undefined {
  const bounds = [
    control.noCache ? now : undefined,
    control.maxAge !== undefined ? now - control.maxAge * 1000 : undefined,
    control.maxStale !== undefined ? now - freshMs - control.maxStale * 1000 : undefined
  ].filter((b): b is number => b !== undefined)
  return bounds.length === 0 ? undefined : Math.max(...bounds)
}

/** stale-if-error: whether an entry that went stale at `staleAfter` may stand in for a failed build now. */
export function usableOnError (control: CacheControl, staleAfter: number, now: number): boolean {
  return control.staleIfError !== undefined && now - staleAfter <= control.staleIfError * 1000
}
