// npm run token / npm run prewarm: runs scripts/NAME.ts with tsx from a source
// checkout, or the compiled dist/scripts/NAME.js where the sources are absent
// (the Docker image holds only the compiled output and production dependencies,
// no tsx) or tsx is not installed. Plain JavaScript: it must run in the image as is.
//   node scripts/cli.mjs token --sub alice
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const [name, ...args] = process.argv.slice(2)
if (name === undefined || !/^[a-z][a-z-]*$/.test(name)) {
  process.stderr.write('usage: node scripts/cli.mjs <token|prewarm|keys> [options]\n')
  process.exit(2)
}
const source = join(root, 'scripts', `${name}.ts`)
const compiled = join(root, 'dist', 'scripts', `${name}.js`)
const haveTsx = existsSync(join(root, 'node_modules', 'tsx'))

let argv
if (existsSync(source) && haveTsx) argv = ['--import', 'tsx', source, ...args]
else if (existsSync(compiled)) argv = [compiled, ...args]
else {
  process.stderr.write(`${name}: neither ${existsSync(source) ? 'tsx (run `npm install`)' : `scripts/${name}.ts`} nor the compiled dist/scripts/${name}.js (run \`npm run build\`) is here\n`)
  process.exit(1)
}
const result = spawnSync(process.execPath, argv, { stdio: 'inherit' })
if (result.error !== undefined) {
  process.stderr.write(`${name}: ${result.error.message}\n`)
  process.exit(1)
}
process.exit(result.status ?? 1)
