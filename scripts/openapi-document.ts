import Fastify from 'fastify'
import app, { serverOptions } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'

/**
 * The OpenAPI document exactly as the app serves it at /documentation/json,
 * built on embedded defaults so it does not depend on the environment.
 */
export async function openapiDocument (): Promise<string> {
  const config = loadConfig({ LOG_LEVEL: 'silent' })
  const fastify = Fastify(serverOptions(config))
  await fastify.register(app, { config })
  await fastify.ready()
  try {
    const res = await fastify.inject('/documentation/json')
    return JSON.stringify(res.json(), null, 2) + '\n'
  } finally {
    await fastify.close()
  }
}
