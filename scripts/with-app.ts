import Fastify, { type FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig, type Config } from '../src/config.ts'

/**
 * For the command-line tools (prewarm, keys): the app built from the same
 * environment as the server, without listening, once its database is open;
 * closed when `work` ends.
 */
export async function withApp<T> (work: (fastify: FastifyInstance, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig()
  const fastify = Fastify(serverOptions({ ...config, logLevel: process.env.LOG_LEVEL ?? 'warn' }))
  await fastify.register(fp(app), { config })
  await fastify.ready()
  try {
    // The server starts without waiting for its database; the tools need it.
    await fastify.db.firstAttempt
    if (!fastify.db.isOpen()) throw new Error('the database could not be opened (see the warning above)')
    return await work(fastify, config)
  } finally {
    await fastify.close()
  }
}
