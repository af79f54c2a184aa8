import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { serverOptions } from '../src/app.ts'
import { NarrativeRequestSchema, NarrativeResponseSchema } from '../src/schemas/narrative.ts'

/**
 * The floors the hit path is measured against, all answering a constant of
 * the hit's size:
 * - `bare`: a bare Fastify POST route that parses the same JSON body;
 * - `redis`: the same route doing one Redis GET first;
 * - `configured`: Fastify as src/app.ts configures it (its server options:
 *   pino at warn, the socket timeouts, the strict Ajv; Fastify's JSON parser;
 *   the route's request and response schemas; an onSend and an onResponse
 *   hook), with no cache behind it: what the framework set-up alone costs.
 * Usage: node --import tsx bench/floor-server.ts <port> <bare|redis|configured> <responseBytes> [redisUrl]
 */
const [port, mode, size, redisUrl] = process.argv.slice(2)
const answer = { narrative: { summary: '', bullets: [] }, cache: { status: 'hit', key: 'narr:v1:narrative@1.0.0:0000000000:0000000000000000000000000000000000000000', ageSeconds: 0 }, engine: 'gpt-4o', version: 'narrative@1.0.0' }
// The summary pads the answer to the hit's size.
answer.narrative.summary = 'x'.repeat(Math.max(0, Number(size) - JSON.stringify(answer).length))
const payload = JSON.stringify(answer)
const redis = mode === 'redis' ? new Redis(redisUrl) : undefined
if (redis !== undefined) await redis.set('floor:key', payload)

const fastify = mode === 'configured'
  ? Fastify(serverOptions({ logLevel: 'warn', trustProxy: false }))
  : Fastify({ logger: false, bodyLimit: 16 * 1024 })

if (mode === 'configured') {
  fastify.removeContentTypeParser('text/plain')
  fastify.addHook('onSend', (request, reply, body, done) => { reply.header('X-Request-Id', request.id); done(null, body) })
  fastify.addHook('onResponse', (_request, _reply, done) => { done() })
  fastify.post('/api/narrative', { schema: { body: NarrativeRequestSchema, response: { 200: NarrativeResponseSchema } } }, async (request, reply) => {
    reply.header('X-Cache', request.ip === '' ? 'MISS' : 'HIT')
    return answer
  })
} else {
  fastify.post('/api/narrative', async (_request, reply) => {
    if (redis !== undefined) await redis.get('floor:key')
    return await reply.type('application/json; charset=utf-8').send(payload)
  })
}
// The same accept queue as the app (LISTEN_BACKLOG's default), so 1,000 connections meet the same kernel.
await fastify.listen({ port: Number(port), host: '127.0.0.1', backlog: 4096 })
process.on('SIGTERM', () => { redis?.disconnect(); process.exit(0) })
