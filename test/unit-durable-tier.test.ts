// The durable tier's rule for giving up on a read (issue 17): never because
// PostgreSQL is slow while it keeps answering; only when it is down (breaker
// open, or silent for the stall window) or past the budget (the model's deadline).
import t from 'tap'
import { CircuitBreaker } from '../src/swr/breaker.ts'
import type { Entry } from '../src/swr/types.ts'
import { DurableTier, type DurableRepository } from '../src/swr/durable-tier.ts'
import { silentLogger } from '../src/swr/logger.ts'

const row = { entry: { value: 'v', createdAt: 1, refreshedAt: 1, staleAfter: 2 } as Entry<string>, version: 1 }
const after = <T>(ms: number, value: T): Promise<T> => new Promise(resolve => setTimeout(() => resolve(value), ms))
const never = (): Promise<never> => new Promise(() => {})

function tier (get: DurableRepository<string>['get'], options: { readTimeoutMs: number, stallMs: number }): DurableTier<string> {
  const repository: DurableRepository<string> = { get, write: async () => ({ written: true, existed: false }) }
  return new DurableTier(repository, new CircuitBreaker({ failureThreshold: 3, cooldownMs: 60_000 }), silentLogger, options)
}

t.test('a read far slower than the stall window is waited for while the database keeps answering other reads', async t => {
  const durable = tier(async key => key === 'slow' ? await after(900, row) : await after(100, null), { readTimeoutMs: 10_000, stallMs: 300 })
  const slow = durable.get('slow')
  // Other keys' reads answer every 100 ms meanwhile: a busy database, not a dead one.
  const ticker = setInterval(() => { durable.get('other').catch(() => {}) }, 100)
  t.teardown(() => clearInterval(ticker))
  t.same(await slow, row, 'answered from the durable tier')
  clearInterval(ticker)
  t.same(durable.readsGivenUp, { breakerOpen: 0, timeout: 0, stalled: 0, error: 0 }, 'nothing given up')
  t.equal(durable.breaker.state, 'closed')
})

t.test('a database that answers nothing: the read is given up after the stall window, long before the budget', async t => {
  const durable = tier(never, { readTimeoutMs: 10_000, stallMs: 200 })
  const started = Date.now()
  t.equal(await durable.get('k'), null, 'given up: a miss')
  t.ok(Date.now() - started < 5000, 'not held until the budget')
  t.equal(durable.readsGivenUp.stalled, 1)
  t.equal(durable.silent, true, 'known silent: a build claim is skipped rather than waited for')
})

t.test('past the budget (the model\'s deadline) a read is given up even while the database answers', async t => {
  const durable = tier(async key => key === 'slow' ? await never() : await after(50, null), { readTimeoutMs: 400, stallMs: 300 })
  const ticker = setInterval(() => { durable.get('other').catch(() => {}) }, 50)
  t.teardown(() => clearInterval(ticker))
  t.equal(await durable.get('slow'), null)
  clearInterval(ticker)
  t.equal(durable.readsGivenUp.timeout, 1, 'counted as past the budget')
  t.equal(durable.readsGivenUp.stalled, 0, 'not as silence: the database was answering')
  t.equal(durable.silent, false)
})
