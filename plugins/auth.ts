import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { IpAllowlist } from '../src/admin/ip-allowlist.js'
import { AdminIpForbiddenError, AdminRoleForbiddenError, AdminTokenError } from '../src/errors.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub?: string, role?: string }
    user: { sub?: string, role?: string, exp?: number }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler of admin routes: a valid HS256 admin token, from an allowlisted address. */
    requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    adminAllowlist: IpAllowlist
  }
}

/** Why a token was refused, in words that never include the token or the secret. */
function tokenProblem (err: unknown): string {
  const code = (err as { code?: string }).code ?? ''
  // @fastify/jwt wraps fast-jwt's errors; fast-jwt's reason is in the message.
  const message = (err as Error).message ?? ''
  if (code.includes('NO_AUTHORIZATION')) return 'no Authorization header'
  if (code.includes('BAD_REQUEST')) return 'the Authorization header is not "Bearer <token>"'
  if (code.includes('EXPIRED') || /expired/i.test(message)) return 'the token has expired'
  if (/claim is required/i.test(message)) return 'the token lacks a required claim (exp)'
  if (/algorithm/i.test(message) || code.includes('MISSING_SIGNATURE')) return 'the token is not signed with HS256'
  if (/signature is invalid/i.test(message)) return 'the token signature does not match'
  if (/malformed/i.test(message)) return 'the token is malformed'
  return 'the token is not valid'
}

/**
 * Admin authentication: @fastify/jwt pinned to HS256 with `exp` required (it
 * accepts every algorithm and no exp unless told), the admin role, and the IP
 * allowlist. The client address is the socket's unless TRUST_PROXY says
 * otherwise (Fastify's trustProxy decides request.ip).
 */
export default fp(async (fastify) => {
  const { config } = fastify
  const secret = config.jwtSecret ?? randomBytes(48).toString('base64url')
  await fastify.register(fastifyJwt, {
    secret,
    sign: { algorithm: 'HS256' },
    verify: { algorithms: ['HS256'], requiredClaims: ['exp'] }
  })
  const allowlist = new IpAllowlist(config.adminIpAllowlist)
  fastify.decorate('adminAllowlist', allowlist)

  fastify.decorate('requireAdmin', async (request: FastifyRequest) => {
    try {
      await request.jwtVerify()
    } catch (err) {
      throw new AdminTokenError(tokenProblem(err))
    }
    if (!allowlist.allows(request.ip)) throw new AdminIpForbiddenError(request.ip)
    if (request.user.role !== 'admin') throw new AdminRoleForbiddenError()
  })
}, { name: 'auth', dependencies: ['config'] })
