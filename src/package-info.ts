import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** package.json of this project, found from here whether running from src/ or dist/. */
function findPackage (): { version: string, description: string } {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'package.json')
    if (existsSync(candidate)) return JSON.parse(readFileSync(candidate, 'utf8'))
    dir = dirname(dir)
  }
  return { version: '0.0.0', description: '' }
}

export const packageInfo = findPackage()
