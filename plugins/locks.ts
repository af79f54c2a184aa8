import fp from 'fastify-plugin'
import { GuardedStore, type StoreFailureCounters } from '../src/swr/guarded-store.ts'
import { Locks } from '../src/swr/locks.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Token-checked locks in the cache store, behind its breaker: one holder per key across instances. */
    locks: Locks
  }
}

/** The locks the engine builds under; close() of the cache plugin gives back what is held. */
export default fp(async (fastify) => {
  const failures: StoreFailureCounters = { storeErrors: 0, storeTimeouts: 0 }
  const locks = new Locks(new GuardedStore(fastify.store, fastify.breaker, failures))
  fastify.decorate('locks', locks)
  fastify.metrics.provide({ locksHeld: () => locks.heldCount, lockStoreFailures: () => failures })
  // After the engine's own close (the cache plugin, registered later, closes first): anything still held or owed.
  fastify.addHook('onClose', async () => { await locks.releaseAll() })
}, { name: 'locks', dependencies: ['redis', 'breaker', 'metrics'] })
