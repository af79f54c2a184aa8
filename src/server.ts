import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import app, { serverOptions } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

/** The only file that listens. */
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
  const fastify = Fastify(serverOptions(config))
  if (config.jwtSecret === undefined) {
    fastify.log.warn('JWT_SECRET is not set: admin tokens are signed with a secret generated for this process only')
  }
  await fastify.register(app, { config })

  // SIGTERM/SIGINT: stop accepting, finish requests in flight and background
  // work, release locks, close Redis; exit 0. A second signal or 25 s forces it.
  closeWithGrace({ delay: 25_000 }, async ({ signal, err }) => {
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
