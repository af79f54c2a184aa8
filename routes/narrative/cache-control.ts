import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CacheControlError, oldestAccepted, parseCacheControl, usableOnError } from '../../src/cache-control.ts'
import { InvalidCacheControlError, RefreshCredentialsError, RefreshForbiddenError } from '../../src/errors.ts'
import type { NarrativeCacheOptions } from '../../src/narrative/service.ts'

/** What a request's Cache-Control asks of POST /api/narrative, once the route has checked who may ask it. */
export interface NarrativeCacheRequest {
  options: NarrativeCacheOptions
  /** no-store: the answer says `Cache-Control: no-store`, so nothing downstream keeps it. */
  noStore: boolean
}

/** API keys' secrets start so; any other bearer token is taken for an admin JWT. */
const API_KEY_PREFIX = 'nck_'

/**
 * Whether the caller may make the model write on demand: an admin token
 * (checked as on the admin routes, allowlist included) or an API key with
 * the refresh right. No credentials: false. Credentials that are not valid:
 * a 401 that says why (never echoing them).
 */
async function mayRefresh (fastify: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
  const header = request.headers.authorization
  if (header === undefined) return false
  const bearer = /^Bearer +(\S+)$/i.exec(header)?.[1]
  if (bearer?.startsWith(API_KEY_PREFIX) === true) {
    const key = await fastify.chat.keyOf(bearer).catch(() => { throw new RefreshCredentialsError('API keys cannot be checked now (the database is unavailable)') })
    if (key === null) throw new RefreshCredentialsError('the API key is not valid (unknown or revoked)')
    return key.refresh
  }
  await fastify.requireAdmin(request, reply)
  return true
}

/**
 * The request's Cache-Control for POST /api/narrative. Anyone may send
 * `max-age`, `max-stale`, `only-if-cached`, `stale-if-error` and `no-store`:
 * none of them makes the server pay for an answer it already has. `no-cache`
 * (a new model call on demand) needs the refresh right: 403 without it, 401
 * with credentials that are not valid. An entry older than `max-age` or
 * `max-stale` allows is written again only for a caller with the right; for
 * others it is a 504.
 */
export async function narrativeCacheRequest (fastify: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<NarrativeCacheRequest> {
  const header = request.headers['cache-control']
  if (header === undefined) return { options: {}, noStore: false }
  let control
  try {
    control = parseCacheControl(Array.isArray(header) ? header.join(',') : header)
  } catch (err) {
    if (err instanceof CacheControlError) throw new InvalidCacheControlError(err.message.replace(/^Cache-Control /, ''))
    throw err
  }
  const minWrittenAt = oldestAccepted(control, Date.now(), fastify.config.staleSeconds * 1000)
  const refresh = minWrittenAt !== undefined ? await mayRefresh(fastify, request, reply) : false
  if (control.noCache && !refresh) {
    throw new RefreshForbiddenError(request.headers.authorization === undefined ? 'no Authorization header' : 'this API key does not carry the refresh right')
  }
  return {
    options: {
      minWrittenAt,
      mayRefresh: refresh,
      onlyIfCached: control.onlyIfCached,
      usableOnError: control.staleIfError === undefined ? undefined : staleAfter => usableOnError(control, staleAfter, Date.now())
    },
    noStore: control.noStore
  }
}
