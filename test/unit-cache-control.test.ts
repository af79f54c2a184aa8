// src/cache-control.ts: RFC 9111's request directives, as parsed for both routes.
import t from 'tap'
import { CacheControlError, oldestAccepted, parseCacheControl } from '../src/cache-control.ts'

t.test('directives are read case-insensitively, quoted values too; unknown ones are ignored', async t => {
  t.same(parseCacheControl('No-Cache, MAX-AGE="60", x-unknown=1'), { noCache: true, noStore: false, onlyIfCached: false, maxAge: 60 })
  t.same(parseCacheControl(undefined), { noCache: false, noStore: false, onlyIfCached: false })
  t.same(parseCacheControl('only-if-cached, no-store, stale-if-error=30'), { noCache: false, noStore: true, onlyIfCached: true, staleIfError: 30 })
})

t.test('max-stale without a value accepts a stale entry of any age (RFC 9111), as no directive does', async t => {
  const control = parseCacheControl('max-stale')
  t.equal(control.maxStale, undefined)
  t.equal(oldestAccepted(control, 1_000_000, 60_000), undefined, 'no bound on the entry\'s age')
  t.equal(parseCacheControl('max-stale=30').maxStale, 30)
  t.equal(oldestAccepted(parseCacheControl('max-stale=30'), 1_000_000, 60_000), 1_000_000 - 60_000 - 30_000)
})

t.test('a malformed value of a known directive is refused, saying which', async t => {
  for (const header of ['max-age=abc', 'max-age=-1', 'max-age=', 'max-stale=', 'max-stale=1.5', 'stale-if-error=99999999999', 'max-age']) {
    t.throws(() => parseCacheControl(header), CacheControlError, header)
  }
  t.throws(() => parseCacheControl('max-age=abc'), /max-age must be a whole number of seconds, got "abc"/)
})
