import { createSigner } from 'fast-jwt'

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }

/** "90s", "30m", "24h", "7d" or a number of seconds, as seconds; undefined when it is none of those. */
export function parseDuration (text: string): number | undefined {
  const m = /^([0-9]+)([smhd]?)$/.exec(text.trim())
  return m === null ? undefined : Number(m[1]) * UNIT_SECONDS[m[2]]
}

/** Longest lifetime the token command mints, whatever ADMIN_TOKEN_MAX_TTL says. */
const MAX_MINTED_SECONDS = 30 * 86_400

/** --ttl of `npm run token`, as seconds: at most `maxSeconds` (ADMIN_TOKEN_MAX_TTL: a longer token would be refused). */
export function parseTtl (text: string, maxSeconds = MAX_MINTED_SECONDS): number {
  const seconds = parseDuration(text)
  if (seconds === undefined) throw new Error(`--ttl must be a number of seconds or a number followed by s, m, h or d (got "${text}")`)
  const max = Math.min(maxSeconds, MAX_MINTED_SECONDS)
  if (seconds < 1 || seconds > max) throw new Error(`--ttl must be between 1 second and ${max} seconds (ADMIN_TOKEN_MAX_TTL: the server refuses a token that lives longer)`)
  return seconds
}

/** What the server demands of an admin token besides its signature, algorithm and exp. */
export interface AdminTokenPolicy {
  /** exp - iat may not exceed this (ADMIN_TOKEN_MAX_TTL). */
  maxTtlSeconds: number
  /** Required `iss` when set (ADMIN_TOKEN_ISSUER). */
  issuer?: string
  /** Required in `aud` when set (ADMIN_TOKEN_AUDIENCE). */
  audience?: string
}

/** A token minted by a machine whose clock runs this far ahead is still accepted. */
export const CLOCK_SKEW_SECONDS = 60

/**
 * Why the claims of a token whose signature, algorithm and exp were verified
 * are still refused, or undefined. A leaked token must not be good for ever:
 * it needs an `iat` no later than now (plus the clock skew) and a lifetime
 * (exp - iat) within the policy's; `iss` and `aud` must match when the policy
 * names them. The reasons name variables, never their values nor the token.
 */
export function claimsProblem (claims: Record<string, unknown>, policy: AdminTokenPolicy, nowSeconds: number): string | undefined {
  const { iat, exp } = claims
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return 'the token has no iat (issued-at) claim'
  if (iat > nowSeconds + CLOCK_SKEW_SECONDS) return 'the token is issued in the future (iat)'
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return 'the token lacks a required claim (exp)'
  if (exp - iat > policy.maxTtlSeconds) return `the token lives longer than ADMIN_TOKEN_MAX_TTL (${policy.maxTtlSeconds} s from iat to exp)`
  if (policy.issuer !== undefined && claims.iss !== policy.issuer) return 'the token issuer (iss) is not ADMIN_TOKEN_ISSUER'
  if (policy.audience !== undefined) {
    const aud = claims.aud
    const ok = aud === policy.audience || (Array.isArray(aud) && aud.includes(policy.audience))
    if (!ok) return 'the token audience (aud) does not include ADMIN_TOKEN_AUDIENCE'
  }
  return undefined
}

export interface MintOptions {
  role?: string
  /** `iss`, as ADMIN_TOKEN_ISSUER. */
  issuer?: string
  /** `aud`, as ADMIN_TOKEN_AUDIENCE. */
  audience?: string
}

/** An HS256 admin token with `sub`, `role` (admin unless told), `iat`, `exp`, and `iss`/`aud` when given. */
export function mintAdminToken (secret: string, sub: string, ttlSeconds: number, options: string | MintOptions = {}): string {
  const { role = 'admin', issuer, audience } = typeof options === 'string' ? { role: options } : options
  if (secret.length < 32) throw new Error('JWT_SECRET must be at least 32 characters')
  if (!/^[A-Za-z0-9@._-]{1,64}$/.test(sub)) throw new Error('--sub must be 1 to 64 letters, digits, @ . _ or -')
  const sign = createSigner({
    key: secret,
    algorithm: 'HS256',
    expiresIn: ttlSeconds * 1000,
    ...(issuer !== undefined ? { iss: issuer } : {}),
    ...(audience !== undefined ? { aud: audience } : {})
  })
  return sign({ sub, role })
}
