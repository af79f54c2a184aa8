// Each circuit breaker is named in its own errors, logs and metrics: the
// database breaker's errors used to say "the Redis circuit breaker is open",
// sending whoever read the logs to the wrong dependency.
import t from 'tap'
import { BreakerOpenError, CircuitBreaker } from '../src/swr/breaker.ts'
import { build, stack } from './helper.ts'

const boom = async (): Promise<never> => { throw new Error('boom') }

async function openError (breaker: CircuitBreaker): Promise<BreakerOpenError> {
  for (let i = 0; i < 10 && breaker.state !== 'open'; i++) await breaker.run(boom).catch(() => {})
  const err = await breaker.run(async () => 'ran').then(() => undefined, (e: unknown) => e)
  if (!(err instanceof BreakerOpenError)) throw new Error(`expected a BreakerOpenError, got ${String(err)}`)
  return err
}

t.test('a breaker names itself in its error', async t => {
  const err = await openError(new CircuitBreaker({ name: 'database', failureThreshold: 1, cooldownMs: 60_000 }))
  t.equal(err.message, 'the database circuit breaker is open')
  t.equal(err.breaker, 'database')
  t.equal(err.code, 'NARR_BREAKER_OPEN')
})

t.test("the app's two breakers: the database one never speaks of Redis, in its errors or metrics", async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  t.equal(app.breaker.name, 'redis')
  t.equal(app.durable.breaker.name, 'database')

  const database = await openError(app.durable.breaker)
  t.equal(database.message, 'the database circuit breaker is open')
  t.notMatch(database.message, /redis/i)
  const redis = await openError(app.breaker)
  t.equal(redis.message, 'the redis circuit breaker is open')

  const metrics = await app.inject({ method: 'GET', url: '/metrics', remoteAddress: '127.0.0.1' })
  t.match(metrics.body, /narrative_breaker_state\{breaker="database"\} 2/, 'the database breaker under its own label, open')
  t.match(metrics.body, /narrative_breaker_state\{breaker="redis"\} 2/, 'the redis breaker under its own label, open')
})
