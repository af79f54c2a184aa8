// BuildClaims over an in-memory claim store: what a builder does when another
// instance holds the claim, when the row lands, and when the database cannot say.
import t from 'tap'
import { BuildClaims, type BuildClaimStore } from '../src/swr/build-claims.ts'
import { silentLogger } from '../src/swr/logger.ts'

/** Claims in a Map, with the same rules as the SQL (live claim of another owner wins; `built` once a row is set). */
function memoryClaims () {
  const claims = new Map<string, { owner: string, expiresAt: number }>()
  const FAILED = '!failed'
  const rows = new Set<string>()
  const released: string[] = []
  const store: BuildClaimStore = {
    async claim (key, owner, ttlMs, _version, takeFailed) {
      const now = Date.now()
      const held = claims.get(key)
      const failed = held !== undefined && held.owner === FAILED && held.expiresAt > now
      const won = held === undefined || held.expiresAt <= now || held.owner === owner || (failed && takeFailed)
      if (won) claims.set(key, { owner, expiresAt: now + ttlMs })
      return { won, built: rows.has(key), failed }
    },
    async fail (key, owner, markerMs) {
      if (claims.get(key)?.owner === owner) claims.set(key, { owner: FAILED, expiresAt: Date.now() + markerMs })
    },
    async release (key, owner) {
      if (claims.get(key)?.owner === owner) claims.delete(key)
      released.push(`${key}:${owner}`)
    }
  }
  return { store, claims, rows, released }
}

const options = { ttlMs: 10_000, pollMinMs: 10, pollMaxMs: 40, entryVersion: 'narrative@1.0.0' }
const direct = { guard: async <T>(op: () => Promise<T>): Promise<T> => await op() }

t.test('a free key is won; a key another owner holds is waited for, and won once that claim is released', async t => {
  const m = memoryClaims()
  const claims = new BuildClaims(m.store, direct, silentLogger, options)
  t.equal(await claims.acquire('k', 'a', 1000), 'won')
  const waiting = claims.acquire('k', 'b', 5000)
  setTimeout(() => { m.store.release('k', 'a').catch(() => {}) }, 100)
  t.equal(await waiting, 'won', 'won after the holder released it')
  t.equal(claims.counters.waited, 1)
})

t.test('while waiting, the holder\'s row lands: built, and nothing is paid', async t => {
  const m = memoryClaims()
  const claims = new BuildClaims(m.store, direct, silentLogger, options)
  await claims.acquire('k', 'a', 1000)
  const waiting = claims.acquire('k', 'b', 5000)
  setTimeout(() => { m.rows.add('k'); m.claims.delete('k') }, 100)
  t.equal(await waiting, 'built')
  await new Promise(resolve => setTimeout(resolve, 10))
  t.same(m.released, ['k:b'], 'the claim it took on the way is given back')
})

t.test('a holder that never finishes: timeout after waitMs (answer without paying); an expired claim is taken over', async t => {
  const m = memoryClaims()
  const claims = new BuildClaims(m.store, direct, silentLogger, { ...options, ttlMs: 300 })
  await claims.acquire('k', 'dead', 1000)
  t.equal(await claims.acquire('k', 'b', 100), 'timeout', 'still live after 100 ms')
  t.equal(await claims.acquire('k', 'c', 2000), 'won', 'expired after 300 ms: taken over')
})

t.test('the database cannot say (fails, or known silent): unavailable at once', async t => {
  const m = memoryClaims()
  const failing = new BuildClaims(m.store, { guard: async () => { throw new Error('down') } }, silentLogger, options)
  t.equal(await failing.acquire('k', 'a', 1000), 'unavailable')
  let calls = 0
  const counting = async <T>(op: () => Promise<T>): Promise<T> => { calls++; return await op() }
  const silent = new BuildClaims(m.store, { guard: counting, silent: true }, silentLogger, options)
  t.equal(await silent.acquire('k', 'a', 1000), 'unavailable')
  t.equal(calls, 0, 'not even tried')
})

t.test('the build waited for fails: failed, never the claim; a new request (or one that never waited) takes it over', async t => {
  const m = memoryClaims()
  const claims = new BuildClaims(m.store, direct, silentLogger, options)
  t.equal(await claims.acquire('k', 'a', 1000), 'won')
  const waiting = claims.acquire('k', 'b', 5000)
  setTimeout(() => { claims.fail('k', 'a').catch(() => {}) }, 100)
  t.equal(await waiting, 'failed', 'the waiter answers without building')
  t.equal(await claims.acquire('k', 'c', 1000, true), 'failed', 'so does a call that waited on a lock before it came here')
  t.equal(await claims.acquire('k', 'd', 1000), 'won', 'a new request tries again')
  t.equal(claims.counters.failed, 2)
})
