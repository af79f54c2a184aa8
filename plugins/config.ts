import fp from 'fastify-plugin'
import { loadConfig, type Config } from '../src/config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface ConfigPluginOptions {
  /** A ready-made configuration (tests); otherwise read from the environment. */
  config?: Config
}

export default fp<ConfigPluginOptions>(async (fastify, opts) => {
  fastify.decorate('config', opts.config ?? loadConfig())
}, { name: 'config' })
