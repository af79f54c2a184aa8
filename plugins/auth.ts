import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { IpAllowlist } from '../src/admin/ip-allowlist.ts'
import { claimsProblem } from '../src/admin/token.ts'
import { AdminIpForbiddenError, AdminRoleForbiddenError, AdminTokenError } from '../src/errors.ts'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub?: string, role?: string }
    user: { sub?: string, role?: string, exp?: number, iat?: number, iss?: string, aud?: string | string[] }
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
 * Admin authentication, in this order: the IP allowlist first, so a caller
 * outside it gets 403 whatever its token and cannot use the routes to learn
 * whether a token is valid; then the token: @fastify/jwt pinned to HS256 with
 * `exp` required (it accepts every algorithm and no exp unless told), an
 * `iat` not in the future, a lifetime within ADMIN_TOKEN_MAX_TTL, `iss` and
 * `aud` when configured (src/admin/token.ts); then the admin role. The
 * client address is the socket's unless TRUST_PROXY names the proxies
 * (src/proxy-trust.ts decides request.ip).
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
    if (!allowlist.allows(request.ip)) throw new AdminIpForbiddenError(request.ip)
    // @fastify/jwt calls a header without the scheme ("Authorization: <token>") a missing header.
    const header = request.headers.authorization
    if (header !== undefined && !/^Bearer +\S+$/i.test(header)) throw new AdminTokenError('the Authorization header is not "Bearer <token>"')
    try {
      await request.jwtVerify()
    } catch (err) {
      throw new AdminTokenError(tokenProblem(err))
    }
    const problem = claimsProblem(request.user, config.adminToken, Math.floor(Date.now() / 1000))
    if (problem !== undefined) throw new AdminTokenError(problem)
    if (request.user.role !== 'admin') throw new AdminRoleForbiddenError()
  })
}, { name: 'auth', dependencies: ['config'] })
