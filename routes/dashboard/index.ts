import type { FastifyPluginAsync } from 'fastify'

/** GET /admin: the admin dashboard page (placeholder until the page lands). */
const routes: FastifyPluginAsync = async (fastify) => {
  fastify.get('/admin', { schema: { hide: true } }, async (_request, reply) => {
    return await reply.type('text/html; charset=utf-8').send('<!doctype html><title>Narrative cache admin</title><p>Dashboard coming.</p>')
  })
}

export default routes
