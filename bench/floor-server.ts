import Fastify from 'fastify'
import { Redis } from 'ioredis'

/**
 * The floors the hit path is measured against: a bare Fastify POST route that
 * parses the same JSON body and returns a constant response of the same size
 * (`bare`), and the same route doing one Redis GET first (`redis`).
 * Usage: node --import tsx bench/floor-server.ts <port> <bare|redis> <responseBytes> [redisUrl]
 */
const [port, mode, size, redisUrl] = process.argv.slice(2)
const payload = JSON.stringify({ narrative: { summary: 'x'.repeat(Math.max(0, Number(size) - 40)), bullets: [] } })
const fastify = Fastify({ logger: false, bodyLimit: 16 * 1024 })
const redis = mode === 'redis' ? new Redis(redisUrl) : undefined
if (redis !== undefined) await redis.set('floor:key', payload)

fastify.post('/api/narrative', async (_request, reply) => {
  if (redis !== undefined) await redis.get('floor:key')
  return await reply.type('application/json; charset=utf-8').send(payload)
})
// The same accept queue as the app (LISTEN_BACKLOG's default), so 1,000 connections meet the same kernel.
await fastify.listen({ port: Number(port), host: '127.0.0.1', backlog: 4096 })
process.on('SIGTERM', () => { redis?.disconnect(); process.exit(0) })
