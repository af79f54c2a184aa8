import { createSigner } from 'fast-jwt'

/** "90s", "30m", "1h", "7d" or a number of seconds, as seconds. */
export function parseTtl (text: string): number {
  const m = /^([0-9]+)([smhd]?)$/.exec(text.trim())
  if (m === null) throw new Error(`--ttl must be a number of seconds or a number followed by s, m, h or d (got "${text}")`)
  const seconds = Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86_400 } as Record<string, number>)[m[2]]
  if (seconds < 1 || seconds > 30 * 86_400) throw new Error('--ttl must be between 1 second and 30 days')
  return seconds
}

/** An HS256 admin token with `sub`, `role: admin`, `iat` and `exp`. */
export function mintAdminToken (secret: string, sub: string, ttlSeconds: number, role = 'admin'): string {
  if (secret.length < 32) throw new Error('JWT_SECRET must be at least 32 characters')
  if (!/^[A-Za-z0-9@._-]{1,64}$/.test(sub)) throw new Error('--sub must be 1 to 64 letters, digits, @ . _ or -')
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: ttlSeconds * 1000 })
  return sign({ sub, role })
}
