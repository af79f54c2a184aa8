import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** The file, under DATA_DIR, that keeps the development signing secret. */
export const DEVELOPMENT_SECRET_FILE = 'jwt-secret'

/**
 * The admin token secret of a server started without JWT_SECRET outside
 * production: generated once and kept in DATA_DIR (mode 0600), so that
 * `npm run token` can mint tokens this server accepts, across restarts,
 * without the newcomer having to stop, set a secret and start again.
 * Created with O_EXCL: two processes starting at once agree on one secret.
 */
export function developmentSecret (dataDir: string): { secret: string, file: string, created: boolean } {
  const file = join(dataDir, DEVELOPMENT_SECRET_FILE)
  mkdirSync(dataDir, { recursive: true })
  try {
    writeFileSync(file, randomBytes(48).toString('base64url') + '\n', { flag: 'wx', mode: 0o600 })
    return { secret: readSecret(file), file, created: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  return { secret: readSecret(file), file, created: false }
}

function readSecret (file: string): string {
  const secret = readFileSync(file, 'utf8').trim()
  // The file's content is never echoed: it is a secret.
  if (secret.length < 32) throw new Error(`${file} does not hold a secret of at least 32 characters: delete it to have a new one generated`)
  return secret
}

/**
 * JWT_SECRET when it is set; otherwise, outside production, the development
 * secret (production refuses to start without JWT_SECRET: src/config.ts).
 */
export function adminTokenSecret (config: { jwtSecret: string | undefined, production: boolean, dataDir: string }): { secret: string, file?: string, created?: boolean } {
  if (config.jwtSecret !== undefined) return { secret: config.jwtSecret }
  if (config.production) throw new Error('JWT_SECRET must be set in production')
  return developmentSecret(config.dataDir)
}
