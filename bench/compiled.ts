import { execFileSync } from 'node:child_process'
import { cpSync } from 'node:fs'

/**
 * The bench runs the app and the floors compiled, as `npm start` runs the app
 * (tsx costs each request time of its own): tsconfig.bench.json, the build's
 * options into dist-bench/, compiles both at once.
 */
export const APP_SCRIPT = 'dist-bench/src/server.js'
export const FLOOR_SCRIPT = 'dist-bench/bench/floor-server.js'

export function compileForBench (): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.bench.json'], { stdio: 'inherit' })
  // The prompt files, where dist-bench/src/domain/prompt.js reads them (as the image's dist/prompts).
  cpSync('prompts', 'dist-bench/prompts', { recursive: true })
}
