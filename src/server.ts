import cluster from 'node:cluster'
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import app, { serverOptions } from './app.ts'
import { ConfigError, loadConfig, type Config } from './config.ts'
import { runPrimary } from './workers.ts'
import { adminTokenSecret } from './admin/development-secret.ts'

/** The only file that listens (in a worker, when WORKERS is above 1). */
async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  // Without JWT_SECRET (development only: production refuses to start) admin
  // tokens are signed with a secret kept in DATA_DIR, which `npm run token` reads.
  const signing = adminTokenSecret(config)
  const secretNote = signing.file === undefined ? undefined : `JWT_SECRET is not set: admin tokens are signed with the development secret in ${signing.file} (mode 0600${signing.created === true ? ', created now' : ''}); \`npm run token -- --sub you\` mints one for this server`
  if (config.workers > 1 && cluster.isPrimary) {
    const log = pino({ level: config.logLevel })
    if (secretNote !== undefined) log.warn(secretNote)
    // The workers inherit it, so a token one of them signed is accepted by all.
    process.env.JWT_SECRET = signing.secret
    runPrimary({ cluster, workers: config.workers, log })
    return
  }
  config = { ...config, jwtSecret: signing.secret }
  const fastify = Fastify(serverOptions(config))
  if (secretNote !== undefined && cluster.isPrimary) fastify.log.warn(secretNote)
  await fastify.register(app, { config })

  // SIGTERM/SIGINT: stop accepting, close idle connections, end event streams
  // with an error event, finish requests in flight and background work
  // (connections still open after CLOSE_CONNECTIONS_AFTER_MS, 6 s, are cut:
  // src/app.ts), release locks, close Redis; exit 0, within the 10 s grace a
  // balancer or orchestrator gives. A second signal or 9.5 s forces it (exit 1).
  // A worker leaves SIGINT (Ctrl-C reaches the whole process group) to the
  // primary, which asks each worker once with SIGTERM.
  if (cluster.isWorker) process.on('SIGINT', () => {})
  closeWithGrace({ delay: 9500, skip: cluster.isWorker ? ['SIGINT'] : [] }, async ({ signal, err }) => {
    if (err !== undefined) fastify.log.error({ err }, 'closing after an uncaught error')
    else fastify.log.info({ signal }, 'closing')
    await fastify.close()
  })

  // Node's default backlog (511) overflows when a thousand clients connect at
  // once: the kernel drops their SYNs, and the retries cost them seconds.
  await fastify.listen({ port: config.port, host: config.host, backlog: config.listenBacklog })
}

main().catch(err => {
  process.stderr.write(`failed to start: ${(err as Error).message}\n`)
  process.exit(1)
})
