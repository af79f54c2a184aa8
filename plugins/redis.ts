import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import type { Cluster, Redis } from 'ioredis'
import { MemoryStore } from '../src/swr/memory-store.ts'
import { createRedisClient, RedisStore } from '../src/swr/redis-store.ts'
import type { CacheStore } from '../src/swr/store.ts'
import { withTimeout } from '../src/timeout.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The cache store: Redis, Redis Cluster, or the in-process store. */
    store: CacheStore
  }
}

/** How long start-up waits for Redis before it goes on without it. */
const CONNECT_WAIT_MS = 3000

async function waitReady (client: Redis | Cluster, ms: number): Promise<boolean> {
  if (client.status === 'ready') return true
  return await new Promise(resolve => {
    const timer = setTimeout(() => done(false), ms)
    const onReady = (): void => done(true)
    function done (ok: boolean): void {
      clearTimeout(timer)
      client.off('ready', onReady)
      resolve(ok)
    }
    client.on('ready', onReady)
    client.connect().catch(() => {})
  })
}

/** QUIT politely when Redis answers, drop the socket when it does not: closing never fails or hangs. */
async function quitOrDisconnect (client: Redis | Cluster): Promise<void> {
  if (client.status === 'ready') {
    const quit = client.quit().then(() => true, () => false)
    if (await withTimeout(quit, 1500, { ref: false }).catch(() => false)) return
  }
  client.disconnect()
}

/**
 * Redis through @fastify/redis (which decorates `fastify.redis` and closes it),
 * with client options that fail fast (src/swr/redis-store.ts). A Redis that
 * is down at start-up is not fatal: @fastify/redis would wait for it, so in
 * that case the same client is decorated here and reconnects in the
 * background while the breaker keeps requests off it.
 */
export default fp(async (fastify) => {
  const { redis: target, memoryStoreMaxBytes } = fastify.config
  if (target.kind === 'memory') {
    const store = new MemoryStore({ maxBytes: memoryStoreMaxBytes })
    fastify.decorate('store', store)
    fastify.addHook('onClose', async () => { await store.close() })
    return
  }

  const client = createRedisClient(target)
  let lastErrorLog = 0
  const onError = (err: Error): void => {
    // ioredis emits an error per reconnect attempt: log at most one every 10 s.
    if (Date.now() - lastErrorLog < 10_000) return
    lastErrorLog = Date.now()
    fastify.log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'redis connection error')
  }
  client.on('error', onError)

  const ready = await waitReady(client, CONNECT_WAIT_MS)
  if (ready) {
    // closeClient stays false: its quit() rejects when Redis is dead or frozen, failing close().
    await fastify.register(fastifyRedis, { client })
  } else {
    fastify.log.warn('redis is not reachable at start-up; serving without it until it is')
    fastify.decorate('redis', client as never)
  }

  const store = new RedisStore(client, { onError })
  fastify.decorate('store', store)
  fastify.addHook('onClose', async () => {
    await store.close()
    await quitOrDisconnect(client)
  })
}, { name: 'redis', dependencies: ['config'] })
