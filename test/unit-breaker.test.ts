import t, { type Test } from 'tap'
import fc from 'fast-check'
import { BreakerOpenError, CircuitBreaker, type BreakerState } from '../src/swr/breaker.ts'

function setup (failureThreshold = 3, cooldownMs = 1000) {
  let now = 10_000
  const changes: BreakerState[] = []
  const breaker = new CircuitBreaker({ failureThreshold, cooldownMs, clock: () => now, onStateChange: s => changes.push(s) })
  return { breaker, changes, advance: (ms: number) => { now += ms } }
}

const ok = async () => 'ok'
const boom = async (): Promise<string> => { throw new Error('boom') }

async function rejectsOpen (t: Test, p: Promise<unknown>, message?: string): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof BreakerOpenError, message ?? 'rejects with BreakerOpenError')
}

async function failTimes (breaker: CircuitBreaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await breaker.run(boom).catch(() => {})
}

t.test('opens after failureThreshold consecutive failures, not before', async t => {
  const { breaker, changes } = setup(3)
  await failTimes(breaker, 2)
  t.equal(breaker.state, 'closed')
  t.equal(await breaker.run(ok), 'ok', 'still lets calls through below the threshold')
  await failTimes(breaker, 2)
  t.equal(breaker.state, 'closed', 'the success reset the count: 2 + 2 failures are not 3 in a row')
  await failTimes(breaker, 1)
  t.equal(breaker.state, 'open')
  t.same(changes, ['open'])
})

t.test('the error of fn is passed through unchanged while closed', async t => {
  const { breaker } = setup(3)
  await t.rejects(breaker.run(boom), { message: 'boom' })
})

t.test('while open, run rejects with BreakerOpenError without calling fn', async t => {
  const { breaker, advance } = setup(1, 1000)
  await failTimes(breaker, 1)
  let calls = 0
  advance(999)
  t.notOk(breaker.allows())
  await rejectsOpen(t, breaker.run(async () => { calls++ }))
  const err = await breaker.run(ok).catch(e => e)
  t.equal(err.code, 'NARR_BREAKER_OPEN')
  t.equal(calls, 0)
  t.equal(breaker.state, 'open')
})

t.test('after the cool-down exactly one trial goes through; concurrent calls are rejected', async t => {
  const { breaker, changes, advance } = setup(1, 1000)
  await failTimes(breaker, 1)
  advance(1000)
  t.ok(breaker.allows())
  let release!: (v: string) => void
  let calls = 0
  const trial = breaker.run(() => { calls++; return new Promise<string>(resolve => { release = resolve }) })
  t.equal(breaker.state, 'half-open')
  t.notOk(breaker.allows(), 'no second trial while one is in flight')
  const others = await Promise.allSettled([breaker.run(async () => { calls++ }), breaker.run(async () => { calls++ })])
  t.same(others.map(r => r.status), ['rejected', 'rejected'])
  t.ok(others.every(r => r.status === 'rejected' && r.reason instanceof BreakerOpenError))
  t.equal(calls, 1)
  release('trial')
  t.equal(await trial, 'trial')
  t.equal(breaker.state, 'closed')
  t.same(changes, ['open', 'half-open', 'closed'])
  t.equal(await breaker.run(ok), 'ok')
})

t.test('a failed trial re-opens and restarts the cool-down', async t => {
  const { breaker, changes, advance } = setup(5, 1000)
  await failTimes(breaker, 5)
  advance(1500)
  await t.rejects(breaker.run(boom), { message: 'boom' }, 'the trial runs and its error is passed through')
  t.equal(breaker.state, 'open', 'a single trial failure re-opens, whatever the threshold')
  advance(999)
  await rejectsOpen(t, breaker.run(ok), 'cool-down counts from the trial failure')
  advance(1)
  t.equal(await breaker.run(ok), 'ok')
  t.same(changes, ['open', 'half-open', 'open', 'half-open', 'closed'])
})

t.test('cooldownMs 0 lets the next call be a trial at once', async t => {
  const { breaker } = setup(1, 0)
  await failTimes(breaker, 1)
  t.equal(breaker.state, 'open')
  t.equal(await breaker.run(ok), 'ok')
  t.equal(breaker.state, 'closed')
})

t.test('constructor rejects bad options', async t => {
  for (const failureThreshold of [0, -1, NaN]) {
    t.throws(() => new CircuitBreaker({ failureThreshold, cooldownMs: 1 }), /failureThreshold/)
  }
  for (const cooldownMs of [-1, NaN]) {
    t.throws(() => new CircuitBreaker({ failureThreshold: 1, cooldownMs }), /cooldownMs/)
  }
  t.doesNotThrow(() => new CircuitBreaker({ failureThreshold: 1, cooldownMs: 0 }))
})

// Model-based: sequential calls against a tiny reference model of the documented behaviour.
type Step = { kind: 'ok' } | { kind: 'fail' } | { kind: 'advance', ms: number }
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.constant({ kind: 'ok' } as const),
  fc.constant({ kind: 'fail' } as const),
  fc.integer({ min: 0, max: 600 }).map(ms => ({ kind: 'advance', ms }) as const)
)

t.test('property: matches a reference model over random success/failure/clock steps', async t => {
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 1000 }), fc.array(stepArb, { maxLength: 60 }),
    async (threshold, cooldown, steps) => {
      let now = 0
      const seen: BreakerState[] = []
      const breaker = new CircuitBreaker({ failureThreshold: threshold, cooldownMs: cooldown, clock: () => now, onStateChange: s => seen.push(s) })
      const model = { state: 'closed' as BreakerState, failures: 0, openedAt: 0 }
      const expected: BreakerState[] = []
      const go = (s: BreakerState) => { model.state = s; expected.push(s) }
      for (const step of steps) {
        if (step.kind === 'advance') { now += step.ms; continue }
        // reference model
        let modelCalls = false
        if (model.state === 'open' && now - model.openedAt >= cooldown) go('half-open')
        if (model.state !== 'open') {
          modelCalls = true
          if (step.kind === 'ok') {
            model.failures = 0
            if (model.state !== 'closed') go('closed')
          } else {
            model.failures++
            if (model.state === 'half-open' || model.failures >= threshold) {
              model.openedAt = now
              go('open')
            }
          }
        }
        // real breaker
        let called = false
        const outcome = await breaker.run(async () => {
          called = true
          if (step.kind === 'fail') throw new Error('fail')
          return 'ok'
        }).then(() => 'ok', (e: Error) => e instanceof BreakerOpenError ? 'open-error' : 'fn-error')
        if (called !== modelCalls) return false
        if (outcome !== (!modelCalls ? 'open-error' : step.kind === 'ok' ? 'ok' : 'fn-error')) return false
        if (breaker.state !== model.state) return false
      }
      return JSON.stringify(seen) === JSON.stringify(expected)
    }
  ), { numRuns: 300 })
  t.pass('model and breaker agree')
})
