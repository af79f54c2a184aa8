import { parseArgs } from 'node:util'
import { mintAdminToken, parseTtl } from '../src/admin/token.js'

/**
 * npm run token -- --sub alice --ttl 1h
 * Prints an admin token signed with JWT_SECRET. The secret is read from the
 * environment only, and never printed.
 */
try {
  const { values } = parseArgs({ options: { sub: { type: 'string' }, ttl: { type: 'string', default: '1h' }, role: { type: 'string', default: 'admin' } } })
  const secret = process.env.JWT_SECRET
  if (secret === undefined || secret === '') throw new Error('JWT_SECRET is not set: export the same secret the server uses')
  if (values.sub === undefined) throw new Error('--sub is required: who the token is for (it appears in the audit log)')
  process.stdout.write(mintAdminToken(secret, values.sub, parseTtl(values.ttl), values.role) + '\n')
} catch (err) {
  process.stderr.write(`token: ${(err as Error).message}\n`)
  process.exit(1)
}
