import { parseArgs } from 'node:util'
import { mintAdminToken, parseTtl } from '../src/admin/token.ts'
import { loadConfig } from '../src/config.ts'
import { adminTokenSecret } from '../src/admin/development-secret.ts'

/**
 * npm run token -- --sub alice --ttl 1h
 * Prints an admin token signed with JWT_SECRET (outside production, without
 * it: the development secret the server keeps in DATA_DIR), with `iss` and `aud` from
 * ADMIN_TOKEN_ISSUER and ADMIN_TOKEN_AUDIENCE when set, refusing a --ttl the
 * server would refuse (ADMIN_TOKEN_MAX_TTL). Everything is read from the same
 * environment as the server's; the secret is never printed.
 */
try {
  const { values } = parseArgs({ options: { sub: { type: 'string' }, ttl: { type: 'string', default: '1h' }, role: { type: 'string', default: 'admin' } } })
  if (values.sub === undefined) throw new Error('--sub is required: who the token is for (it appears in the audit log)')
  const config = loadConfig()
  // JWT_SECRET, or (outside production) the development secret the server keeps in DATA_DIR.
  const { secret } = adminTokenSecret(config)
  const { adminToken } = config
  const ttl = parseTtl(values.ttl, adminToken.maxTtlSeconds)
  process.stdout.write(mintAdminToken(secret, values.sub, ttl, { role: values.role, issuer: adminToken.issuer, audience: adminToken.audience }) + '\n')
} catch (err) {
  process.stderr.write(`token: ${(err as Error).message}\n`)
  process.exit(1)
}
