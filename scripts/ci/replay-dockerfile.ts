// CI: replays the Dockerfile without a Docker engine (none exists on these machines).
//
// Each stage starts as an empty folder (the stage's filesystem root, under a
// temporary folder) holding only what its COPY lines name: from the build
// context (this repository) honouring .dockerignore, or, for `COPY --from=`, from
// an earlier stage's folder. Its RUN lines run there, in its WORKDIR, with its
// ENV. The base image (node:24-bookworm-slim) is stood in for by this machine:
// the Node.js 24 on PATH. Then the last stage's CMD runs with the runtime ENV
// (PORT on a free port, HOST 127.0.0.1, a JWT_SECRET since NODE_ENV=production,
// DATA_DIR in a temporary folder) and must answer GET /health and a narrative;
// `npm run token` and `npm run prewarm` must run there from the compiled output.
//
// Not replayed, and said so: USER (everything runs as this user), EXPOSE,
// HEALTHCHECK (its command names the image's port 3000), the `# syntax` line.
// Any other instruction, or a COPY form this script does not know, fails the
// replay rather than being skipped silently.
//
// Usage: tsx scripts/ci/replay-dockerfile.ts [--keep]   (--keep leaves the folders for a look)
import { spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NARRATIVE_BODY, freePort, start, waitForOk } from './serve.ts'

const context = fileURLToPath(new URL('../..', import.meta.url))
const BASE_IMAGE = 'node:24-bookworm-slim'

export interface Instruction { line: number, keyword: string, args: string }
export interface Stage { name: string, base: string, instructions: Instruction[] }

/** Instructions with continuation lines joined, comments and parser directives dropped, grouped by stage. */
export function parseDockerfile (text: string): Stage[] {
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1
    let line = lines[i]
    if (/^\s*(#|$)/.test(line)) continue
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      line = line.replace(/\\\s*$/, '').trimEnd() + ' ' + lines[++i].trim()
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line)
    if (m === null) throw new Error(`Dockerfile line ${first}: cannot parse ${JSON.stringify(line)}`)
    const keyword = m[1].toUpperCase()
    const args = m[2].trim()
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      if (from === null) throw new Error(`Dockerfile line ${first}: FROM ${args}`)
      stages.push({ name: from[2] ?? String(stages.length), base: from[1], instructions: [] })
      continue
    }
    if (stages.length === 0) throw new Error(`Dockerfile line ${first}: ${keyword} before FROM`)
    stages[stages.length - 1].instructions.push({ line: first, keyword, args })
  }
  return stages
}

/** `k=v k2="v 2"` (or the old `k v` form) as pairs. */
export function parseEnv (args: string): Array<[string, string]> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const m = /^(\S+)\s+(.*)$/.exec(args)
    if (m === null) throw new Error(`ENV ${args}`)
    return [[m[1], m[2]]]
  }
  const pairs: Array<[string, string]> = []
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)\s*/y
  let pos = 0
  while (pos < args.length) {
    re.lastIndex = pos
    const m = re.exec(args)
    if (m === null) throw new Error(`ENV ${args}: cannot parse from ${args.slice(pos)}`)
    let value = m[2]
    if (value.startsWith('"')) value = JSON.parse(value) as string
    else if (value.startsWith("'")) value = value.slice(1, -1)
    pairs.push([m[1], value])
    pos = re.lastIndex
  }
  return pairs
}

/** The exec form (`["a", "b"]`) as its array, or undefined for the shell form. */
function execForm (args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined
  const parsed = JSON.parse(args) as unknown
  if (!Array.isArray(parsed) || !parsed.every(x => typeof x === 'string')) throw new Error(`not an exec form: ${args}`)
  return parsed
}

/** .dockerignore as Docker reads it: in order, the last matching pattern decides; `!` re-includes; a match on a folder covers what is in it. */
export class DockerIgnore {
  private readonly patterns: Array<{ re: RegExp, include: boolean }> = []
  constructor (text: string) {
    for (let raw of text.split('\n')) {
      raw = raw.trim()
      if (raw === '' || raw.startsWith('#')) continue
      const include = raw.startsWith('!')
      let pattern = posix.normalize((include ? raw.slice(1) : raw).trim()).replace(/^\/+/, '').replace(/\/+$/, '')
      if (pattern === '.' || pattern === '') pattern = ''
      this.patterns.push({ re: DockerIgnore.toRegExp(pattern), include })
    }
  }

  static toRegExp (pattern: string): RegExp {
    let source = ''
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]
      if (c === '*' && pattern[i + 1] === '*') {
        i++
        if (pattern[i + 1] === '/') { i++; source += '(?:.*/)?' } else source += '.*'
      } else if (c === '*') source += '[^/]*'
      else if (c === '?') source += '[^/]'
      else if (c === '[') {
        const end = pattern.indexOf(']', i)
        if (end === -1) throw new Error(`.dockerignore: unclosed [ in ${pattern}`)
        source += '[' + pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']'
        i = end
      } else if (c === '\\' && i + 1 < pattern.length) source += '\\' + pattern[++i]
      else source += c.replace(/[.+^${}()|\]\\/]/g, '\\$&')
    }
    return new RegExp(`^${source}$`)
  }

  /** Whether `path` (relative to the context, `/`-separated) is left out of the context. */
  excludes (path: string): boolean {
    const parts = path.split('/')
    let excluded = false
    for (const { re, include } of this.patterns) {
      // The path itself, or a folder it is in.
      let matched = false
      for (let n = parts.length; n >= 1 && !matched; n--) matched = re.test(parts.slice(0, n).join('/'))
      if (matched) excluded = !include
    }
    return excluded
  }
}

interface StageState { root: string, workdir: string, env: Record<string, string> }

/** The stage-filesystem path `p` (absolute, or relative to the WORKDIR) inside the stage's folder. */
function inStage (state: StageState, p: string): string {
  const absolute = posix.resolve(state.workdir, p)
  return join(state.root, ...absolute.split('/').filter(Boolean))
}

/** Copies a context path into the stage, leaving out what .dockerignore excludes. */
async function copyFromContext (ignore: DockerIgnore, source: string, target: string, isDir: boolean): Promise<number> {
  const rel = posix.normalize(source).replace(/^\.\/?/, '').replace(/\/+$/, '')
  if (rel.startsWith('..')) throw new Error(`COPY ${source}: outside the build context`)
  if (rel !== '' && ignore.excludes(rel)) throw new Error(`COPY ${source}: excluded by .dockerignore (docker build would fail: not found)`)
  const from = join(context, rel)
  const st = await stat(from).catch(() => undefined)
  if (st === undefined) throw new Error(`COPY ${source}: not found in the build context`)
  if (!st.isDirectory()) {
    await mkdir(dirname(target), { recursive: true })
    await cp(from, target)
    return 1
  }
  // A folder: its contents go into the target (as docker does), each file checked against .dockerignore.
  let files = 0
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      const relPath = relative(context, path).split('\\').join('/')
      if (ignore.excludes(relPath)) continue
      if (entry.isDirectory()) await walk(path)
      else {
        const to = join(target, relative(from, path))
        await mkdir(dirname(to), { recursive: true })
        await cp(path, to)
        files++
      }
    }
  }
  await mkdir(target, { recursive: true })
  await walk(from)
  if (isDir && files === 0) process.stdout.write(`    (nothing of ${source} is in the context)\n`)
  return files
}

/** Runs a command to its end, its output shown; rejects on a non-zero exit. */
function run (argv: string[], cwd: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'inherit', 'inherit'] })
    child.once('error', reject)
    child.once('exit', (code, signal) => code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code ?? signal}`)))
  })
}

/** How this machine reaches the npm registry (a CA bundle, a proxy): what a `docker build` would get from the network it runs on. */
const NETWORK_VARIABLES = /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|(HTTPS?|NO|ALL)_PROXY)$/i

/** The environment a stage starts with: what the base image gives (PATH with Node.js 24), a HOME and an npm cache of the replay's own. */
function baseEnv (scratch: string): Record<string, string> {
  const network = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => NETWORK_VARIABLES.test(e[0]) && e[1] !== undefined))
  return {
    ...network,
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: join(scratch, 'home'),
    // The image's npm cache, not this machine's: `npm cache clean --force` must not empty the machine's.
    npm_config_cache: join(scratch, 'npm-cache'),
    npm_config_update_notifier: 'false'
  }
}

async function replayStage (stage: Stage, stages: Map<string, StageState>, ignore: DockerIgnore, scratch: string): Promise<{ state: StageState, cmd?: string[] }> {
  if (stage.base !== BASE_IMAGE && !stages.has(stage.base)) throw new Error(`FROM ${stage.base}: the replay stands in only for ${BASE_IMAGE} (this machine's Node.js)`)
  const major = Number(process.versions.node.split('.')[0])
  if (major !== 24) throw new Error(`${BASE_IMAGE} is stood in for by this machine's Node.js, which is ${process.version}, not 24`)
  const state: StageState = { root: join(scratch, 'stages', stage.name), workdir: '/', env: baseEnv(scratch) }
  await mkdir(state.root, { recursive: true })
  await mkdir(state.env.HOME, { recursive: true })
  let cmd: string[] | undefined
  process.stdout.write(`\n== stage ${stage.name} (FROM ${stage.base}) in ${state.root}\n`)
  for (const ins of stage.instructions) {
    process.stdout.write(`-- line ${ins.line}: ${ins.keyword} ${ins.args}\n`)
    switch (ins.keyword) {
      case 'WORKDIR':
        state.workdir = posix.resolve(state.workdir, ins.args)
        await mkdir(inStage(state, '.'), { recursive: true })
        break
      case 'ENV':
        for (const [k, v] of parseEnv(ins.args)) state.env[k] = v.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, name: string) => state.env[name] ?? '')
        break
      case 'COPY': {
        const words = ins.args.split(/\s+/)
        let from: string | undefined
        while (words[0]?.startsWith('--')) {
          const flag = words.shift()!
          if (flag.startsWith('--from=')) from = flag.slice('--from='.length)
          else if (flag.startsWith('--chown=') || flag.startsWith('--chmod=')) process.stdout.write(`    (${flag} not replayed: everything is this user's)\n`)
          else throw new Error(`line ${ins.line}: COPY ${flag} is not known to the replay`)
        }
        if (words.length < 2) throw new Error(`line ${ins.line}: COPY needs a source and a destination`)
        const dest = words.pop()!
        if (words.some(w => /[*?[]/.test(w))) throw new Error(`line ${ins.line}: COPY with a wildcard is not known to the replay`)
        if (words.length > 1 && !dest.endsWith('/')) throw new Error(`line ${ins.line}: COPY of several sources needs a destination ending in /`)
        for (const source of words) {
          let target = inStage(state, dest)
          if (from !== undefined) {
            const other = stages.get(from)
            if (other === undefined) throw new Error(`line ${ins.line}: COPY --from=${from}: no earlier stage of that name`)
            const src = inStage({ ...other, workdir: '/' }, source)
            if (!existsSync(src)) throw new Error(`line ${ins.line}: COPY --from=${from} ${source}: not found in that stage`)
            const isDir = (await stat(src)).isDirectory()
            if (!isDir && dest.endsWith('/')) target = join(target, posix.basename(source))
            await mkdir(isDir ? target : dirname(target), { recursive: true })
            await cp(src, target, { recursive: true })
            process.stdout.write(`    ${from}:${source} -> ${dest}\n`)
          } else {
            const isDir = (await stat(join(context, source)).catch(() => undefined))?.isDirectory() ?? false
            if (!isDir && dest.endsWith('/')) target = join(target, posix.basename(source))
            const files = await copyFromContext(ignore, source, target, isDir)
            process.stdout.write(`    ${source} -> ${dest} (${files} file${files === 1 ? '' : 's'})\n`)
          }
        }
        break
      }
      case 'RUN': {
        const argv = execForm(ins.args) ?? ['/bin/sh', '-c', ins.args]
        await run(argv, inStage(state, '.'), state.env)
        break
      }
      case 'CMD':
        cmd = execForm(ins.args) ?? ['/bin/sh', '-c', ins.args]
        break
      case 'USER':
      case 'EXPOSE':
      case 'HEALTHCHECK':
        process.stdout.write(`    (${ins.keyword} noted, not replayed)\n`)
        break
      default:
        throw new Error(`line ${ins.line}: ${ins.keyword} is not known to the replay: teach scripts/ci/replay-dockerfile.ts, or the check would miss it`)
    }
  }
  stages.set(stage.name, state)
  return { state, cmd }
}

function check (ok: boolean, what: string): void {
  process.stdout.write(`${ok ? 'ok' : 'NOT OK'}: ${what}\n`)
  if (!ok) throw new Error(`replay failed: ${what}`)
}

/** Runs `npm run -s NAME -- args` in the runtime stage, with its ENV plus `env`; resolves with its stdout. */
async function runCli (state: StageState, env: Record<string, string>, args: string[]): Promise<string> {
  const child = start('npm', ['run', '-s', ...args], { cwd: inStage(state, '.'), env: { ...state.env, ...env } })
  const timer = setTimeout(() => { child.stop().catch(() => {}) }, 120_000)
  const code = await child.exited
  clearTimeout(timer)
  if (code !== 0) throw new Error(`npm run ${args.join(' ')}: exit ${code}\n${child.output()}`)
  return child.output()
}

async function main (): Promise<void> {
  const dockerfile = await readFile(join(context, 'Dockerfile'), 'utf8')
  const ignore = new DockerIgnore(await readFile(join(context, '.dockerignore'), 'utf8').catch(() => ''))
  const stages = parseDockerfile(dockerfile)
  const scratch = await mkdtemp(join(tmpdir(), 'replay-dockerfile-'))
  const done = new Map<string, StageState>()
  try {
    let last: { state: StageState, cmd?: string[] } | undefined
    for (const stage of stages) last = await replayStage(stage, done, ignore, scratch)
    if (last?.cmd === undefined) throw new Error('the last stage has no CMD')
    const { state, cmd } = last

    process.stdout.write(`\n== the image: CMD ${JSON.stringify(cmd)} in ${inStage(state, '.')}\n`)
    check(!existsSync(inStage(state, 'src')) && !existsSync(inStage(state, 'node_modules/tsx')) && !existsSync(inStage(state, 'node_modules/typescript')),
      'the runtime stage holds no sources, no tsx and no TypeScript')
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const secret = 'replay-dockerfile-secret-0123456789-abcdef'
    const runtimeEnv = { PORT: String(port), HOST: '127.0.0.1', JWT_SECRET: secret, DATA_DIR: join(scratch, 'data'), LOG_LEVEL: 'info' }
    const server = start(cmd[0], cmd.slice(1), { cwd: inStage(state, '.'), env: { ...state.env, ...runtimeEnv } })
    try {
      const ms = await waitForOk(`${base}/health`, server, 120_000)
      check(true, `GET /health answered 200 after ${(ms / 1000).toFixed(1)} s`)
      const res = await fetch(`${base}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(NARRATIVE_BODY) })
      const body = await res.json() as { cache?: { status?: string }, narrative?: { summary?: string } }
      check(res.status === 200 && typeof body.narrative?.summary === 'string', `POST /api/narrative answered ${res.status} (${body.cache?.status})`)
      const token = (await runCli(state, { JWT_SECRET: secret }, ['token', '--', '--sub', 'replay', '--ttl', '10m'])).trim()
      check(/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token), '`npm run token` ran from the compiled output and printed a token')
      // The server answers before its embedded database is open (GET /api/narrative/stats is a 503
      // meanwhile, and /ready says `starting`): wait for it, as an operator's readiness probe would.
      const opening = performance.now()
      let database = 'starting'
      while (database === 'starting' && performance.now() - opening < 120_000) {
        database = ((await (await fetch(`${base}/ready`)).json()) as { database?: string }).database ?? 'unknown'
        if (database === 'starting') await new Promise(resolve => setTimeout(resolve, 100))
      }
      check(database === 'embedded', `/ready says the embedded database is open (${database}, ${((performance.now() - opening) / 1000).toFixed(1)} s after the token)`)
      const stats = await fetch(`${base}/api/narrative/stats`, { headers: { authorization: `Bearer ${token}` } })
      await stats.arrayBuffer()
      check(stats.status === 200, `the token opens GET /api/narrative/stats (${stats.status})`)
    } finally {
      const code = await server.stop()
      process.stdout.write(`(server stopped: exit ${code})\n`)
      if (code !== 0) process.stdout.write(server.output().split('\n').slice(-20).join('\n') + '\n')
    }
    // With the server stopped (the embedded database is one process's at a time).
    const prewarm = await runCli(state, { ...runtimeEnv, LOG_LEVEL: 'warn' }, ['prewarm', '--', '--top', '5', '--period', '1d'])
    const result = prewarm.split('\n').find(line => /^\{"warmed":\d+/.test(line))
    check(result !== undefined, `\`npm run prewarm\` ran from the compiled output: ${result ?? prewarm}`)
    process.stdout.write('\nreplay-dockerfile: ok\n')
  } finally {
    if (process.argv.includes('--keep')) process.stdout.write(`(kept ${scratch})\n`)
    else await rm(scratch, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch(err => {
    process.stderr.write(`replay-dockerfile: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
