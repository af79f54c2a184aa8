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
    else if (name === 'max-stale') out.maxStale = seconds(name, value)
    else if (name === 'stale-if-error') out.staleIfError = seconds(name, value)
  }
  return out
}

function seconds (name: string, value: string): number {
  if (!/^[0-9]{1,10}$/.test(value)) throw new CacheControlError(`Cache-Control ${name} must be a whole number of seconds, got "${value}"`)
  return Number(value)
}
