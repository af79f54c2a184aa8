import t from 'tap'
import fc from 'fast-check'
import { MAX_PERCENT_TOTAL, profileRuleViolation } from '../src/domain/rules.ts'
import { NarrativeFormatError, parseNarrative } from '../src/domain/narrative.ts'
import { templateNarrative } from '../src/domain/template-narrator.ts'
import type { NormalizedProfile } from '../src/domain/profile.ts'

t.test('rules: primary and hybrid must name systems present in percentages', async t => {
  const pcts = { Arcturus: 42, Sirius: 18.5 }
  t.equal(profileRuleViolation({ classification: 'primary', primary: 'Arcturus', percentages: pcts }), null)
  t.match(profileRuleViolation({ classification: 'primary', percentages: pcts }), /primary is required/)
  t.match(profileRuleViolation({ classification: 'primary', primary: 'Vega', percentages: pcts }), /"Vega" is missing/)
  t.match(profileRuleViolation({ classification: 'primary', primary: 'toString', percentages: pcts }), /missing/, 'inherited names do not count')
  t.equal(profileRuleViolation({ classification: 'hybrid', hybrid: ['Arcturus', 'Sirius'], percentages: pcts }), null)
  t.match(profileRuleViolation({ classification: 'hybrid', percentages: pcts }), /hybrid is required/)
  t.match(profileRuleViolation({ classification: 'hybrid', hybrid: ['Arcturus', 'Vega', 'Rigel'], percentages: pcts }), /missing from profile.percentages \(or under 0.5\): Vega, Rigel$/)
  t.match(profileRuleViolation({ classification: 'unresolved', percentages: {} }), /no share of 0.5 or more/)
})

t.test('rules: the total of the bucketed shares (what the key holds) may reach 100.5 but not exceed it', async t => {
  t.equal(MAX_PERCENT_TOTAL, 100.5)
  t.equal(profileRuleViolation({ classification: 'unresolved', percentages: { A: 50, B: 50.5 } }), null)
  t.match(profileRuleViolation({ classification: 'unresolved', percentages: { A: 50, B: 51 } }), /sum to 101 once floored to 0.5 buckets, more than 100.5/)
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
