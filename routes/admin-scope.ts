import type { FastifyInstance } from 'fastify'
import { errorResponses } from '../src/schemas/error.ts'

/** What every admin route may refuse with: no token, not allowed, too many calls, the rate-limit store down; and 500. */
export const adminDenied = errorResponses([401, 403, 429, 500, 503], {
  429: 'Too many admin calls from this address: Retry-After says when to try again',
  503: 'The rate-limit store (Redis) is unavailable: admin routes are closed until it is back'
})

/** The admin routes' OpenAPI security: the admin token. */
export const adminSecurity = [{ bearerAuth: [] }]

/**
 * Makes the routes of this scope admin routes: the admin token, allowlist and
 * role before validation (plugins/auth.ts), and every call, allowed or
 * refused, written to the audit log.
 */
export function adminScope (fastify: FastifyInstance): void {
  fastify.addHook('preValidation', fastify.requireAdmin)
  fastify.addHook('onResponse', async (request, reply) => {
    const status = reply.statusCode
    const entry = {
      actor: status < 400 || status === 403 ? (request.user?.sub ?? null) : null,
      action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`,
      ip: request.ip,
      outcome: status < 400 ? 'allowed' as const : 'denied' as const,
      status
    }
    fastify.db.audit.insert(entry).catch(err => request.log.warn({ err: (err as Error).message, audit: entry }, 'audit write failed'))
  })
}
