// npm start's first step (after check-node.cjs): check the environment, then
// build only when the sources changed since the last build.
//
// 1. The configuration is checked before anything is built, so a bad variable
//    (PORT=abc) is refused in about a second, not after a full tsc run: with the
//    compiled config when the build is up to date, else with tsx on src/config.ts.
// 2. The build is up to date when dist/.build-stamp lists exactly the sources
//    (path, size and mtime of every file under src, plugins, routes, scripts
//    but scripts/ci, types, and the tsconfig and lock files) as they are now;
//    otherwise the sources are compiled (esbuild, see build()) and the stamp is
//    rewritten. A failed build leaves no stamp.
//    `npm run build` writes the stamp too (`--stamp`).
//
// Plain JavaScript with no dependencies of its own: it must run before the build.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const SOURCE_DIRS = ['src', 'plugins', 'routes', 'scripts', 'types']
const SOURCE_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json']
/** Not part of the build (tsconfig.build.json excludes it): the CI checks. */
const NOT_BUILT = join('scripts', 'ci')
const STAMP = join(root, 'dist', '.build-stamp')
const ENTRY = join(root, 'dist', 'src', 'server.js')

/** `path size mtime` of every source file, one a line, sorted. */
export function sourceListing (base = root) {
  const lines = []
  const visit = (path) => {
    const st = statSync(path, { throwIfNoEntry: false })
    if (st === undefined) return
    if (st.isDirectory()) {
      if (relative(base, path) === NOT_BUILT) return
      for (const name of readdirSync(path)) visit(join(path, name))
    } else {
      lines.push(`${relative(base, path)} ${st.size} ${Math.trunc(st.mtimeMs)}`)
    }
  }
  for (const dir of SOURCE_DIRS) visit(join(base, dir))
  for (const file of SOURCE_FILES) visit(join(base, file))
  return lines.sort().join('\n') + '\n'
}

function upToDate (listing) {
  return existsSync(ENTRY) && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === listing
}

function fail (message) {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n')
  process.exit(1)
}

/** Loads the configuration the way the server will, and exits 1 with its one-line message if it is refused. */
async function checkConfig (fresh) {
  if (fresh) {
    const { loadConfig, ConfigError } = await import(new URL('../dist/src/config.js', import.meta.url).href)
    try {
      loadConfig()
    } catch (err) {
      if (err instanceof ConfigError) fail(err.message)
      throw err
    }
    return
  }
  // Not built yet (or stale): the TypeScript source, through tsx (a dev dependency, as tsc is).
  if (!existsSync(join(root, 'node_modules', 'tsx'))) fail('prestart: tsx is not installed (npm start builds from source): run `npm install` first')
  const check = "const { loadConfig, ConfigError } = await import('./src/config.ts'); " +
    "try { loadConfig() } catch (err) { if (err instanceof ConfigError) { process.stderr.write(err.message + '\\n'); process.exit(1) } throw err }"
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', check], { cwd: root, stdio: 'inherit' })
  if (result.error !== undefined) fail(`prestart: could not check the configuration: ${result.error.message}`)
  if (result.status !== 0) process.exit(result.status ?? 1)
}

/** Every TypeScript source the build compiles (not the .d.ts files, not scripts/ci). */
function sourceFiles () {
  const files = []
  const visit = (path) => {
    if (relative(root, path) === NOT_BUILT) return
    const st = statSync(path, { throwIfNoEntry: false })
    if (st === undefined) return
    if (st.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name))
    else if (path.endsWith('.ts') && !path.endsWith('.d.ts')) files.push(path)
  }
  for (const dir of ['src', 'plugins', 'routes', 'scripts']) visit(join(root, dir))
  return files
}

/**
 * Compiles for `npm start`: esbuild transpiles each file as tsx runs it (well
 * under a second), without the type check, which `npm run typecheck` and CI do;
 * `npm run build` (and so the Docker image) compiles with tsc. tsc stands in
 * when esbuild is not installed.
 */
async function build (listing) {
  process.stderr.write('Sources changed since the last build: compiling...\n')
  rmSync(STAMP, { force: true })
  const started = Date.now()
  const esbuild = await import('esbuild').catch(() => undefined)
  if (esbuild !== undefined) {
    await esbuild.build({
      entryPoints: sourceFiles(),
      outdir: join(root, 'dist'),
      outbase: root,
      format: 'esm',
      platform: 'node',
      target: 'node24',
      sourcemap: true,
      tsconfig: join(root, 'tsconfig.build.json'),
      logLevel: 'warning'
    }).catch(() => fail('prestart: the build failed (see above)'))
  } else {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    if (!existsSync(tsc)) fail('prestart: TypeScript is not installed (npm start builds from source): run `npm install` first')
    const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
    if (result.status !== 0) fail('prestart: the build failed (see above)')
  }
  writeFileSync(STAMP, listing)
  process.stderr.write(`Built with ${esbuild !== undefined ? 'esbuild' : 'tsc'} in ${((Date.now() - started) / 1000).toFixed(1)} s (npm run typecheck checks the types).\n`)
}

if (process.argv.includes('--stamp')) {
  // After `npm run build`: record what was just built.
  writeFileSync(STAMP, sourceListing())
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const listing = sourceListing()
  const fresh = upToDate(listing)
  await checkConfig(fresh)
  if (!fresh) await build(listing)
}
