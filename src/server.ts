import cluster from 'node:cluster'
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { runPrimary } from './workers.js'

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
  if (config.workers > 1 && cluster.isPrimary) {
    const log = pino({ level: config.logLevel })
    if (config.jwtSecret === undefined) log.warn('JWT_SECRET is not set: admin tokens are signed with a secret generated for this run only (shared by its workers)')
    runPrimary({ cluster, workers: config.workers, log })
    return
  }
  const fastify = Fastify(serverOptions(config))
  if (config.jwtSecret === undefined) {
    fastify.log.warn('JWT_SECRET is not set: admin tokens are signed with a secret generated for this process only')
  }
  await fastify.register(app, { config })

  // SIGTERM/SIGINT: stop accepting, finish requests in flight and background
  // work, release locks, close Redis; exit 0. A second signal or 25 s forces it.
  // A worker leaves SIGINT (Ctrl-C reaches the whole process group) to the
  // primary, which asks each worker once with SIGTERM.
  if (cluster.isWorker) process.on('SIGINT', () => {})
  closeWithGrace({ delay: 25_000, skip: cluster.isWorker ? ['SIGINT'] : [] }, async ({ signal, err }) => {
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
