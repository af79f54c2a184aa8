import t from 'tap'
import { TimeoutError, settledWithin, withTimeout } from '../src/timeout.ts'

t.test('withTimeout: the value or the error when in time; a TimeoutError (with its message) when not', async t => {
  t.equal(await withTimeout(Promise.resolve(1), 100), 1)
  await t.rejects(withTimeout(Promise.reject(new Error('own')), 100), /own/)
  const at = Date.now()
  const err = await withTimeout(new Promise(() => {}), 50, { message: 'no ping' }).catch((e: unknown) => e)
  t.ok(err instanceof TimeoutError)
  t.equal((err as TimeoutError).message, 'no ping')
  t.equal((err as TimeoutError).code, 'NARR_TIMEOUT')
  t.ok(Date.now() - at >= 45, 'after the time')
})

t.test('settledWithin: true when settled (either way) in time, false otherwise; never rejects', async t => {
  t.equal(await settledWithin(Promise.resolve('x'), 100), true)
  t.equal(await settledWithin(Promise.reject(new Error('x')), 100), true)
  t.equal(await settledWithin(new Promise(() => {}), 30), false)
})
