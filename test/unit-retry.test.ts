import t, { type Test } from 'tap'
import OpenAI from 'openai'
import { DeadlineError, withRetry, type RetryPolicy } from '../src/narrator/retry.ts'
import { NarratorError } from '../src/narrator/narrator.ts'
import { toNarratorError } from '../src/narrator/openai-narrator.ts'
import { heldBy } from './support/signals.ts'
import { NarrativeFormatError } from '../src/domain/narrative.ts'

const policy = (p: Partial<RetryPolicy> = {}): RetryPolicy => ({ attempts: 3, baseDelayMs: 1, maxDelayMs: 10, deadlineMs: 5000, ...p })
const zero = () => 0

/** An attempt that only ends when its signal aborts, like the SDK's request. */
const hang = (signal: AbortSignal) => new Promise<never>((_resolve, reject) => {
  signal.addEventListener('abort', () => reject(signal.reason), { once: true })
})

/** AbortSignal.timeout's timer is unref'd: keep the loop alive while waiting on it. */
function keepAlive (t: Test): void {
  const timer = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(timer))
}

async function caught (p: Promise<unknown>): Promise<unknown> {
  return p.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e)
}

t.test('succeeds after failures within the attempts', async t => {
  let calls = 0
  const result = await withRetry(async () => {
    calls++
    if (calls < 3) throw new NarratorError('flaky', true)
    return 'done'
  }, policy({ attempts: 3 }))
  t.equal(result, 'done')
  t.equal(calls, 3)
})

t.test('stops at `attempts` and throws the last error', async t => {
  let calls = 0
  const errors: NarratorError[] = []
  const err = await caught(withRetry(async () => {
    calls++
    const e = new NarratorError(`fail ${calls}`, true)
    errors.push(e)
    throw e
  }, policy({ attempts: 4 }), undefined, zero))
  t.equal(calls, 4)
  t.equal(err, errors[3])
})

t.test('a non-retryable NarratorError stops at once', async t => {
  let calls = 0
  const fatal = new NarratorError('bad request', false, undefined, 400)
  const err = await caught(withRetry(async () => { calls++; throw fatal }, policy({ attempts: 5 })))
  t.equal(calls, 1)
  t.equal(err, fatal)
})

t.test('an unknown error is retried', async t => {
  let calls = 0
  await caught(withRetry(async () => { calls++; throw new TypeError('x') }, policy({ attempts: 2 })))
  t.equal(calls, 2)
})

t.test('Retry-After is honoured when below maxDelayMs', async t => {
  const at: number[] = []
  await withRetry(async () => {
    at.push(Date.now())
    if (at.length === 1) throw new NarratorError('429', true, 80, 429)
    return 'ok'
  }, policy({ baseDelayMs: 0, maxDelayMs: 1000 }), undefined, zero)
  t.ok(at[1] - at[0] >= 75, `waited ${at[1] - at[0]} ms for an 80 ms Retry-After`)
})

t.test('Retry-After is capped by maxDelayMs', async t => {
  const at: number[] = []
  await withRetry(async () => {
    at.push(Date.now())
    if (at.length === 1) throw new NarratorError('429', true, 60_000, 429)
    return 'ok'
  }, policy({ baseDelayMs: 0, maxDelayMs: 40 }), undefined, zero)
  const gap = at[1] - at[0]
  t.ok(gap >= 35 && gap < 1000, `waited ${gap} ms, capped at 40`)
})

t.test('a wait that would pass the deadline is not started', async t => {
  let calls = 0
  const started = Date.now()
  const tooLong = new NarratorError('429', true, 5000, 429)
  const err = await caught(withRetry(async () => { calls++; throw tooLong }, policy({ maxDelayMs: 10_000, deadlineMs: 300 })))
  t.equal(calls, 1)
  t.equal(err, tooLong)
  t.ok(Date.now() - started < 250, 'gave up at once rather than sleeping')
})

t.test('a hanging attempt is aborted at the deadline and DeadlineError is thrown', async t => {
  keepAlive(t)
  let calls = 0
  let seen: AbortSignal | undefined
  const started = Date.now()
  const err = await caught(withRetry(signal => { calls++; seen = signal; return hang(signal) }, policy({ deadlineMs: 150, attempts: 3 })))
  const elapsed = Date.now() - started
  t.ok(err instanceof DeadlineError, `got ${String(err)}`)
  t.equal((err as DeadlineError).retryable, false)
  t.ok(err instanceof NarratorError)
  t.equal(calls, 1, 'no attempt starts after the deadline')
  t.equal(seen?.aborted, true)
  t.ok(elapsed >= 140 && elapsed < 400, `ended after ${elapsed} ms for a 150 ms deadline`)
})

t.test('the outer signal aborts a running attempt', async t => {
  keepAlive(t)
  const outer = new AbortController()
  let calls = 0
  let seen: AbortSignal | undefined
  const started = Date.now()
  setTimeout(() => outer.abort(new Error('client went away')), 30)
  const err = await caught(withRetry(signal => { calls++; seen = signal; return hang(signal) }, policy({ deadlineMs: 5000 }), outer.signal))
  t.ok(Date.now() - started < 1000, 'did not wait for the deadline')
  t.equal(calls, 1, 'no retry after the caller aborted')
  t.equal(seen?.aborted, true)
  t.match(err, { message: 'client went away' })
})

t.test('an already-aborted outer signal runs no attempt', async t => {
  let calls = 0
  await caught(withRetry(async () => { calls++ }, policy(), AbortSignal.abort()))
  t.equal(calls, 0)
})

const apiError = (status: number, headers: Record<string, string> = {}) =>
  OpenAI.APIError.generate(status, { error: { message: 'nope' } }, undefined, new Headers(headers))

t.test('toNarratorError: retryable statuses', async t => {
  for (const status of [408, 409, 429, 500, 502, 503]) {
    const e = toNarratorError(apiError(status))
    t.equal(e.retryable, true, `${status} is retryable`)
    t.equal(e.status, status)
  }
  for (const status of [400, 401, 403, 404, 422]) {
    t.equal(toNarratorError(apiError(status)).retryable, false, `${status} is not retryable`)
  }
})

t.test('toNarratorError: Retry-After in seconds, retry-after-ms, and an HTTP date', async t => {
  t.equal(toNarratorError(apiError(429)).retryAfterMs, undefined)
  t.equal(toNarratorError(apiError(429, { 'retry-after': '2' })).retryAfterMs, 2000)
  t.equal(toNarratorError(apiError(429, { 'retry-after': '0.5' })).retryAfterMs, 500)
  t.equal(toNarratorError(apiError(429, { 'retry-after-ms': '1500' })).retryAfterMs, 1500)
  t.equal(toNarratorError(apiError(503, { 'retry-after-ms': '250', 'retry-after': '9' })).retryAfterMs, 250, 'the ms header wins')
  const dated = toNarratorError(apiError(429, { 'retry-after': new Date(Date.now() + 10_000).toUTCString() })).retryAfterMs
  t.ok(dated !== undefined && dated > 8000 && dated <= 10_000, `HTTP date gives ${dated}`)
  t.equal(toNarratorError(apiError(429, { 'retry-after': new Date(Date.now() - 60_000).toUTCString() })).retryAfterMs, 0, 'a past date is 0')
  t.equal(toNarratorError(apiError(429, { 'retry-after': 'soon' })).retryAfterMs, undefined)
})

t.test('toNarratorError: a malformed numeric Retry-After gives no hint rather than NaN', async t => {
  for (const value of ['1.2.3', '.']) {
    const ms = toNarratorError(apiError(429, { 'retry-after': value })).retryAfterMs
    t.ok(ms === undefined || (Number.isFinite(ms) && ms >= 0), `retry-after "${value}" gives ${ms}`)
    const viaMs = toNarratorError(apiError(429, { 'retry-after-ms': value })).retryAfterMs
    t.ok(viaMs === undefined || (Number.isFinite(viaMs) && viaMs >= 0), `retry-after-ms "${value}" gives ${viaMs}`)
  }
})

t.test('toNarratorError: connection, timeout, abort, format and unknown errors', async t => {
  t.equal(toNarratorError(new OpenAI.APIConnectionTimeoutError()).retryable, true)
  t.equal(toNarratorError(new OpenAI.APIConnectionError({ message: 'ECONNRESET' })).retryable, true)
  t.equal(toNarratorError(new OpenAI.APIUserAbortError()).retryable, false)
  t.equal(toNarratorError(new NarrativeFormatError('not JSON')).retryable, true)
  const own = new NarratorError('mine', false)
  t.equal(toNarratorError(own), own, 'a NarratorError passes through')
  const unknown = toNarratorError(new Error('weird'))
  t.equal(unknown.retryable, true)
  t.match(unknown.message, /weird/)
  t.equal(toNarratorError('a string').retryable, true)
})

t.test('a long-lived outer signal holds nothing once calls end: no listener, no dependent signal (the leak of AbortSignal.any)', async t => {
  const outer = new AbortController()
  for (let i = 0; i < 200; i++) {
    await withRetry(async () => i, policy(), outer.signal)
    await caught(withRetry(async () => { throw new NarratorError('fails', false) }, policy(), outer.signal))
  }
  t.same(heldBy(outer.signal), { listeners: 0, dependents: 0 }, 'the outer signal holds nothing after 400 calls')
  // While a call runs, it is aborted with the outer one, and only then is it attached.
  let inside: { listeners: number, dependents: number } | undefined
  await withRetry(async () => { inside = heldBy(outer.signal) }, policy(), outer.signal)
  t.ok(inside !== undefined && inside.listeners + inside.dependents === 1, 'one attachment while the call runs')
})
