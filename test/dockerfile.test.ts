import t from 'tap'
import { readFile } from 'node:fs/promises'
import { DockerIgnore, parseDockerfile, parseEnv } from '../scripts/ci/replay-dockerfile.ts'

// The replay itself (npm run check:docker) builds and runs the image's stages; it
// is a CI step of its own (minutes). These are the static facts it relies on.
const root = new URL('../', import.meta.url)
const dockerfile = await readFile(new URL('Dockerfile', root), 'utf8')
const ignoreText = await readFile(new URL('.dockerignore', root), 'utf8').catch(() => '')

t.test('.dockerignore keeps the heavy and private things out of the build context', async t => {
  const ignore = new DockerIgnore(ignoreText)
  for (const path of ['node_modules', 'node_modules/fastify/package.json', 'dist/src/server.js', 'data/pglite/PG_VERSION', '.node/bin/node', '.git/HEAD', '.tap/x', 'coverage/lcov.info', 'dist-bench/a.js', '.env', 'npm-debug.log', 'test/helper.ts']) {
    t.ok(ignore.excludes(path), `${path} is left out`)
  }
  for (const path of ['package.json', 'package-lock.json', 'src/server.ts', 'types/fastify-rate-limit-redis-store.d.ts', 'scripts/cli.mjs', 'public/admin/index.html', 'openapi/openapi.json']) {
    t.notOk(ignore.excludes(path), `${path} is in the context`)
  }
})

t.test('every folder the build compiles is copied into the build stage, and nothing copied is ignored', async t => {
  const stages = parseDockerfile(dockerfile)
  t.same(stages.map(s => [s.name, s.base]), [['build', 'node:24-bookworm-slim'], ['runtime', 'node:24-bookworm-slim']])
  const tsconfig = JSON.parse(await readFile(new URL('tsconfig.build.json', root), 'utf8')) as { include: string[] }
  const copied = (stage: number): string[] => stages[stage].instructions
    .filter(i => i.keyword === 'COPY' && !i.args.startsWith('--from'))
    .flatMap(i => i.args.split(/\s+/).slice(0, -1))
  for (const dir of tsconfig.include) t.ok(copied(0).includes(dir), `the build stage copies ${dir}/ (tsc includes it)`)
  const ignore = new DockerIgnore(ignoreText)
  for (const source of [...copied(0), ...copied(1)]) t.notOk(ignore.excludes(source), `${source} is not excluded by .dockerignore`)
  // The runtime stage runs the CLIs from dist/ through scripts/cli.mjs, without tsx.
  t.ok(copied(1).includes('scripts/cli.mjs'))
  const pkg = JSON.parse(await readFile(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.token, 'node scripts/cli.mjs token')
  t.equal(pkg.scripts.prewarm, 'node scripts/cli.mjs prewarm')
  const runtimeEnv = stages[1].instructions.filter(i => i.keyword === 'ENV').flatMap(i => parseEnv(i.args))
  t.match(Object.fromEntries(runtimeEnv), { NODE_ENV: 'production', DATA_DIR: /^\/home\/node\// }, 'the embedded database where USER node may write')
})

t.test('the replay parses Dockerfile syntax as Docker does', async t => {
  const stages = parseDockerfile('# syntax=docker/dockerfile:1\nFROM node:24-bookworm-slim AS a\nRUN echo one \\\n  two\nENV A=1 B="x y" C=\'z\'\nFROM a\nCMD ["node", "x.js"]\n')
  t.equal(stages.length, 2)
  t.same(stages[0].instructions.map(i => [i.keyword, i.args]), [['RUN', 'echo one two'], ['ENV', 'A=1 B="x y" C=\'z\'']])
  t.same(stages[1].base, 'a')
  t.same(parseEnv('A=1 B="x y" C=\'z\''), [['A', '1'], ['B', 'x y'], ['C', 'z']])
  t.same(parseEnv('NAME some value'), [['NAME', 'some value']])
  t.throws(() => parseEnv('A=1 =2'), /cannot parse/)
  const ignore = new DockerIgnore('*.md\n!README.md\n**/secret*\n/build/\n')
  t.ok(ignore.excludes('NOTES.md'))
  t.notOk(ignore.excludes('README.md'), '! re-includes')
  t.notOk(ignore.excludes('docs/NOTES.md'), '* does not cross folders')
  t.ok(ignore.excludes('a/b/secret.txt'), '** crosses folders')
  t.ok(ignore.excludes('build/x/y.js'), 'a folder covers what is in it')
})
