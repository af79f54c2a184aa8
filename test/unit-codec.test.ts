import t, { type Test } from 'tap'
import fc from 'fast-check'
import { gzipSync } from 'node:zlib'
import {
  CacheCorruptionError, COMPRESS_ABOVE_BYTES, decodeEntry, encodeEntry, MAX_VALUE_BYTES, ValueTooLargeError, type CachedNarrative
} from '../src/narrative/codec.ts'
import { versionOf, withVersion } from '../src/swr/store.ts'

const ENGINE = 'narrative@1.0.0'

function entry (summary = 'A warm story.', bullets: string[] = ['one', 'two']): CachedNarrative {
  return {
    version: ENGINE,
    engine: 'gpt-4o',
    prompt_hash: '0123456789',
    profile: { classification: 'primary', primary: 'Arcturus', percentages: { Arcturus: 42, Sirius: 18.5 } },
    narrative: { summary, bullets },
    meta: { created_at: 1, refreshed_at: 2, stale_after: 3, ttl_seconds: 4, size_bytes: 0, compression: 'none' }
  }
}

/** An entry whose JSON (as given to encodeEntry) is exactly `bytes` long. */
function entryOfSize (bytes: number): CachedNarrative {
  const e = entry('', [])
  const pad = bytes - Buffer.byteLength(JSON.stringify(e))
  return entry('x'.repeat(pad), [])
}

function corrupt (t: Test, stored: Buffer, message: string): void {
  let thrown: unknown
  try {
    decodeEntry(stored, ENGINE)
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof CacheCorruptionError, `${message}: throws CacheCorruptionError (got ${String(thrown)})`)
}

const header = (format: string, payload: Buffer | string, version = 1700000000000) =>
  withVersion(version, Buffer.concat([Buffer.from(format, 'latin1'), Buffer.from(payload)]))

t.test('round trip of a small entry: plain JSON, version header, meta filled in', async t => {
  const e = entry()
  const stored = encodeEntry(e, 1700000000123)
  t.equal(versionOf(stored), 1700000000123)
  t.equal(String.fromCharCode(stored[13]), 'j')
  const back = decodeEntry(stored, ENGINE)
  // size_bytes is the byte length of the stored JSON itself, size_bytes included.
  t.same(back, { ...e, meta: { ...e.meta, size_bytes: Buffer.byteLength(JSON.stringify(back)), compression: 'none' } })
})

t.test('values over 64 KiB are gzipped and decode equal', async t => {
  const e = entryOfSize(COMPRESS_ABOVE_BYTES + 1)
  const stored = encodeEntry(e, 5)
  t.equal(String.fromCharCode(stored[13]), 'z')
  t.ok(stored.length < COMPRESS_ABOVE_BYTES / 4, 'compressed')
  const back = decodeEntry(stored, ENGINE)
  t.equal(back.meta.compression, 'gzip')
  t.equal(back.meta.size_bytes, Buffer.byteLength(JSON.stringify(back)))
  t.ok(back.meta.size_bytes > COMPRESS_ABOVE_BYTES)
  t.same(back.narrative, e.narrative)
  t.same(back.profile, e.profile)
})

t.test('just under 64 KiB (size_bytes included) is not compressed', async t => {
  const stored = encodeEntry(entryOfSize(COMPRESS_ABOVE_BYTES - 10), 5)
  t.equal(String.fromCharCode(stored[13]), 'j')
})

t.test('over 128 KiB throws ValueTooLargeError', async t => {
  const err = (() => { try { encodeEntry(entryOfSize(MAX_VALUE_BYTES + 1), 5) } catch (e) { return e } })()
  t.ok(err instanceof ValueTooLargeError)
  t.equal((err as ValueTooLargeError).code, 'SWR_VALUE_TOO_LARGE')
})

// A regression test: encodeEntry once checked the size before writing meta.size_bytes,
// so a value at the limit grew past it and gunzip (capped at the limit) refused it.
t.test('anything encodeEntry accepts, decodeEntry reads back (at the 128 KiB limit)', async t => {
  for (const size of [MAX_VALUE_BYTES - 10, MAX_VALUE_BYTES]) {
    let stored: Buffer | undefined
    try {
      stored = encodeEntry(entryOfSize(size), 5)
    } catch (err) {
      t.ok(err instanceof ValueTooLargeError, `${size}: refused with ValueTooLargeError`)
      continue
    }
    let decoded: CachedNarrative | undefined
    try {
      decoded = decodeEntry(stored, ENGINE)
    } catch (err) {
      t.fail(`${size}: encoded entry does not decode: ${(err as Error).message}`)
      continue
    }
    t.equal(decoded.narrative.summary.length, entryOfSize(size).narrative.summary.length, `${size}: round trip`)
  }
})

t.test('decode throws CacheCorruptionError for every kind of bad value', async t => {
  const good = Buffer.from(JSON.stringify(entry()))
  corrupt(t, Buffer.alloc(0), 'empty')
  corrupt(t, good, 'no header')
  corrupt(t, Buffer.concat([Buffer.from('12345678901x2j'), good]), 'non-digit header')
  corrupt(t, withVersion(1, Buffer.from('j')), 'header only')
  corrupt(t, header('x', good), 'unknown format byte')
  corrupt(t, header('z', good), 'z format but not gzip')
  corrupt(t, header('z', gzipSync(good).subarray(0, 20)), 'truncated gzip')
  corrupt(t, header('z', gzipSync(Buffer.alloc(10 * 1024 * 1024))), 'gzip bomb (10 MB of zeros)')
  corrupt(t, header('j', '{"version":'), 'bad JSON')
  corrupt(t, header('j', Buffer.from([0xff, 0xfe, 0x00])), 'binary garbage')
  corrupt(t, header('j', 'null'), 'JSON null')
  corrupt(t, header('j', '[]'), 'JSON array')
  corrupt(t, header('j', JSON.stringify({ ...entry(), narrative: { summary: '', bullets: [] } })), 'empty summary')
  corrupt(t, header('j', JSON.stringify({ ...entry(), meta: { ...entry().meta, compression: 'brotli' } })), 'bad compression')
  const { prompt_hash: _, ...noHash } = entry()
  corrupt(t, header('j', JSON.stringify(noHash)), 'missing field')
  corrupt(t, header('j', JSON.stringify({ ...entry(), version: 'narrative@0.9.0' })), 'wrong engine version')
  corrupt(t, header('z', gzipSync(JSON.stringify({ ...entry(), version: 'narrative@0.9.0' }))), 'gzipped, wrong engine version')
  t.same(decodeEntry(header('z', gzipSync(good)), ENGINE).narrative, entry().narrative, 'the same bytes gzipped are fine')
})

t.test('property: decodeEntry on arbitrary bytes returns a value or throws CacheCorruptionError', async t => {
  const bytes = fc.uint8Array({ maxLength: 200 }).map(a => Buffer.from(a))
  const headed = fc.tuple(fc.nat(), fc.constantFrom('j', 'z', 'x'), fc.oneof(bytes, fc.json().map(s => Buffer.from(s))))
    .map(([v, f, p]) => header(f, f === 'z' && p.length % 2 === 0 ? gzipSync(p) : p, v))
  const mutated = fc.tuple(fc.nat({ max: 400 }), fc.integer({ min: 0, max: 255 }))
    .map(([i, b]) => { const s = encodeEntry(entry(), 9); s[i % s.length] = b; return s })
  fc.assert(fc.property(fc.oneof(bytes, headed, mutated), stored => {
    try {
      const value = decodeEntry(stored, ENGINE)
      return value.version === ENGINE
    } catch (err) {
      return err instanceof CacheCorruptionError
    }
  }), { numRuns: 2000 })
  t.pass('only CacheCorruptionError escapes')
})
