import t from 'tap'
import fc from 'fast-check'
import { MAX_PERCENT_TOTAL, profileRuleViolation } from '../src/domain/rules.js'
import { NarrativeFormatError, parseNarrative } from '../src/domain/narrative.js'
import { templateNarrative } from '../src/domain/template-narrator.js'
import type { NormalizedProfile } from '../src/domain/profile.js'
import { NegativeCache, type NegativeCacheOptions } from '../src/cache/negative-cache.js'
import { MemoryStore } from '../src/cache/memory-store.js'
import { CircuitBreaker } from '../src/cache/breaker.js'

t.test('rules: primary and hybrid must name systems present in percentages', async t => {
  const pcts = { Arcturus: 42, Sirius: 18.5 }
  t.equal(profileRuleViolation({ classification: 'primary', primary: 'Arcturus', percentages: pcts }, 60.5), null)
  t.match(profileRuleViolation({ classification: 'primary', percentages: pcts }, 60.5), /primary is required/)
  t.match(profileRuleViolation({ classification: 'primary', primary: 'Vega', percentages: pcts }, 60.5), /"Vega" is missing/)
  t.match(profileRuleViolation({ classification: 'primary', primary: 'toString', percentages: pcts }, 60.5), /missing/, 'inherited names do not count')
  t.equal(profileRuleViolation({ classification: 'hybrid', hybrid: ['Arcturus', 'Sirius'], percentages: pcts }, 60.5), null)
  t.match(profileRuleViolation({ classification: 'hybrid', percentages: pcts }, 60.5), /hybrid is required/)
  t.match(profileRuleViolation({ classification: 'hybrid', hybrid: ['Arcturus', 'Vega', 'Rigel'], percentages: pcts }, 60.5), /missing from profile.percentages: Vega, Rigel$/)
  t.equal(profileRuleViolation({ classification: 'unresolved', primary: 'Vega', percentages: pcts }, 60.5), null, 'unresolved does not check primary')
})

t.test('rules: the raw total may reach 100.5 but not exceed it', async t => {
  const p: NormalizedProfile = { classification: 'unresolved', percentages: { A: 50 } }
  t.equal(MAX_PERCENT_TOTAL, 100.5)
  t.equal(profileRuleViolation(p, 100.5), null)
  t.match(profileRuleViolation(p, 100.501), /sum to 100.5, more than 100.5/)
  t.match(profileRuleViolation(p, 150.456), /sum to 150.46/)
})

t.test('parseNarrative rejects what is not a narrative', async t => {
  const bad: Array<[string | null | undefined, RegExp]> = [
    [undefined, /no content/], [null, /no content/], ['', /no content/], ['  \n', /no content/],
    ['summary: hi', /not JSON/], ['{"summary":', /not JSON/],
    ['"text"', /not an object/], ['[]', /not an object/], ['null', /not an object/], ['42', /not an object/],
    ['{}', /no summary/], ['{"summary":"   "}', /no summary/], ['{"summary":7}', /no summary/],
    [JSON.stringify({ summary: 'x'.repeat(20_001) }), /oversized/],
    ['{"summary":"ok","bullets":"one"}', /bullets/], ['{"summary":"ok","bullets":[1]}', /bullets/],
    ['{"summary":"ok","bullets":null}', /bullets/],
    [JSON.stringify({ summary: 'ok', bullets: Array(21).fill('b') }), /bullets/]
  ]
  for (const [input, reason] of bad) {
    let err: unknown
    try { parseNarrative(input) } catch (e) { err = e }
    t.ok(err instanceof NarrativeFormatError, `${JSON.stringify(input)?.slice(0, 40)} is refused`)
    t.match((err as Error).message, reason)
  }
})

t.test('parseNarrative keeps the text exactly as written (streamed deltas must add up to it)', async t => {
  t.same(parseNarrative('  {"summary":"  Hello.  ","bullets":[" a ","b"]} '), { summary: '  Hello.  ', bullets: [' a ', 'b'] })
  t.same(parseNarrative('{"summary":"Hi"}'), { summary: 'Hi', bullets: [] })
  t.same(parseNarrative(JSON.stringify({ summary: 'x'.repeat(20_000), bullets: Array(20).fill('b') })).bullets.length, 20)
})

t.test('template: deterministic, and names the primary', async t => {
  const p: NormalizedProfile = { classification: 'primary', primary: 'Arcturus', percentages: { Arcturus: 42, Pleiades: 15, Sirius: 18.5 } }
  const a = templateNarrative(p)
  t.same(templateNarrative(structuredClone(p)), a)
  t.match(a.summary, /Arcturus, at 42% of your signature/)
  t.match(a.summary, /coloured by Sirius and Pleiades/)
  t.same(a.bullets, ['Arcturus: 42% of your resonance.', 'Sirius: 18.5% of your resonance.', 'Pleiades: 15% of your resonance.'])
})

t.test('template: hybrid names every hybrid system and the strongest thread', async t => {
  const n = templateNarrative({ classification: 'hybrid', hybrid: ['Sirius', 'Vega', 'Rigel'], percentages: { Sirius: 30, Vega: 30.5, Rigel: 29 } })
  t.match(n.summary, /hybrid of Sirius, Vega and Rigel/)
  t.match(n.summary, /Vega is the strongest thread at 30.5%/)
})

// A primary need not be the largest share (rules.ts does not require it).
t.test('template: a primary that is not the largest share still gives well-formed prose', async t => {
  const n = templateNarrative({ classification: 'primary', primary: 'Pleiades', percentages: { Arcturus: 60, Pleiades: 40 } })
  t.match(n.summary, /Pleiades/)
  t.notMatch(n.summary, /coloured by ,/, `no empty list in: ${n.summary}`)
})

const nameArb = fc.stringMatching(/^[A-Z][a-z]{1,8}$/)
const profileArb: fc.Arbitrary<NormalizedProfile> = fc.uniqueArray(nameArb, { minLength: 0, maxLength: 7 }).chain(names => fc.record({
  classification: fc.constantFrom('primary', 'hybrid', 'unresolved') as fc.Arbitrary<NormalizedProfile['classification']>,
  primary: fc.option(names.length > 0 ? fc.constantFrom(...names) : nameArb, { nil: undefined }),
  hybrid: fc.option(fc.subarray(names), { nil: undefined }),
  percentages: fc.tuple(...names.map(() => fc.integer({ min: 0, max: 200 }).map(h => h / 2)))
    .map(values => Object.fromEntries(names.map((n, i) => [n, values[i]])))
}, { requiredKeys: ['classification', 'percentages'] }))

t.test('property: every profile yields a non-empty, deterministic summary naming its primary/hybrid systems', async t => {
  fc.assert(fc.property(profileArb, p => {
    const n = templateNarrative(p)
    if (n.summary.trim() === '' || JSON.stringify(templateNarrative(p)) !== JSON.stringify(n)) return false
    if (n.bullets.length !== Math.min(5, Object.keys(p.percentages).length)) return false
    if (p.classification === 'primary' && p.primary !== undefined && !n.summary.includes(p.primary)) return false
    if (p.classification === 'hybrid' && p.hybrid !== undefined && !p.hybrid.every(h => n.summary.includes(h))) return false
    return true
  }), { numRuns: 500 })
  t.pass('held')
})

function negative (opts: Partial<NegativeCacheOptions> = {}, breakerThreshold = 1) {
  let now = 1_000_000
  const clock = () => now
  const store = new MemoryStore({ maxBytes: 1_000_000, clock })
  const breaker = new CircuitBreaker({ failureThreshold: breakerThreshold, cooldownMs: 60_000, clock })
  const cache = new NegativeCache(store, breaker, { minTtlMs: 300_000, maxTtlMs: 900_000, maxEntries: 100, clock, random: () => 0.5, ...opts })
  return { cache, store, breaker, advance: (ms: number) => { now += ms } }
}
const tick = () => new Promise(resolve => setImmediate(resolve))

t.test('negative cache: constructor checks the TTL range', async t => {
  const store = new MemoryStore({ maxBytes: 10 })
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 1 })
  t.throws(() => new NegativeCache(store, breaker, { minTtlMs: 0, maxTtlMs: 10, maxEntries: 1 }))
  t.throws(() => new NegativeCache(store, breaker, { minTtlMs: 10, maxTtlMs: 9, maxEntries: 1 }))
})

t.test('negative cache: remember/recall, and the TTL is drawn between min and max', async t => {
  for (const [random, ttl] of [[0, 300_000], [0.5, 600_000], [1, 900_000]] as const) {
    const { cache, advance } = negative({ random: () => random })
    t.equal(cache.recall('k'), undefined)
    cache.remember('k', 'primary missing')
    t.equal(cache.recall('k'), 'primary missing')
    advance(ttl - 1)
    t.equal(cache.recall('k'), 'primary missing', `random ${random}: alive at ${ttl - 1} ms`)
    advance(1)
    t.equal(cache.recall('k'), undefined, `random ${random}: gone at ${ttl} ms`)
    t.equal(cache.size, 0, 'expired entry dropped on recall')
  }
})

t.test('negative cache: the reason is written under neg: with the same TTL', async t => {
  const { cache, store, advance } = negative()
  cache.remember('narr:v1:abc', 'sum too high')
  await tick()
  t.equal((await store.get('neg:narr:v1:abc'))?.toString(), 'sum too high')
  t.equal(await store.get('narr:v1:abc'), null, 'nothing under the plain key')
  advance(600_000)
  t.equal(await store.get('neg:narr:v1:abc'), null)
})

t.test('negative cache: an open breaker skips the store but still remembers locally', async t => {
  const { cache, store, breaker } = negative()
  await breaker.run(async () => { throw new Error('redis down') }).catch(() => {})
  t.equal(breaker.state, 'open')
  cache.remember('k', 'why')
  await tick()
  t.equal(cache.recall('k'), 'why')
  t.equal(await store.get('neg:k'), null)
})

t.test('negative cache: a failing store does not throw from remember', async t => {
  const { cache, store } = negative()
  store.set = async () => { throw new Error('write failed') }
  t.doesNotThrow(() => cache.remember('k', 'why'))
  await tick()
  t.equal(cache.recall('k'), 'why')
})

t.test('negative cache: bounded by maxEntries, oldest first', async t => {
  const { cache } = negative({ maxEntries: 3 })
  for (const k of ['a', 'b', 'c', 'd']) cache.remember(k, k)
  t.equal(cache.size, 3)
  t.equal(cache.recall('a'), undefined)
  t.same(['b', 'c', 'd'].map(k => cache.recall(k)), ['b', 'c', 'd'])
  for (let i = 0; i < 50; i++) cache.remember(`x${i}`, 'r')
  t.equal(cache.size, 3)
})

t.test('negative cache: remembering a key already held evicts nothing else', async t => {
  const { cache } = negative({ maxEntries: 2 })
  cache.remember('a', 'first')
  cache.remember('b', 'second')
  cache.remember('b', 'second again')
  t.equal(cache.recall('b'), 'second again')
  t.equal(cache.recall('a'), 'first', 'a is still held: the cache was not over its bound')
  t.equal(cache.size, 2)
})
