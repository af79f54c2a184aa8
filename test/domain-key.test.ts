import t from 'tap'
import fc from 'fast-check'
import { bucket, canonicalJson, normalizeProfile, profileHash, sha1Hex, type Profile } from '../src/domain/profile.ts'
import { cacheKey } from '../src/domain/cache-key.ts'
import { ENGINE_VERSION, NEWEST_PROMPT, PROMPT_HASH, PROMPTS, buildMessages, parsePromptFile, promptVersion } from '../src/domain/prompt.ts'
import { canonicalLocale } from '../src/domain/locale.ts'

const example: Profile = {
  classification: 'primary',
  primary: 'Arcturus',
  percentages: { Arcturus: 42.3, Sirius: 18.7, Pleiades: 15.2 }
}

t.test('the contract example normalizes as documented', async t => {
  const normalized = canonicalJson(normalizeProfile(example))
  t.equal(normalized, '{"classification":"primary","percentages":{"Arcturus":42.0,"Pleiades":15.0,"Sirius":18.5},"primary":"Arcturus"}')
  t.equal(bucket(42.3), 42)
  t.equal(bucket(18.7), 18.5)
  t.equal(bucket(100), 100)
  t.equal(bucket(0), 0)
})

t.test('key format: prefix, v1, engine version, prompt version, model, 10-char prompt hash, sha1 of profile+locale', async t => {
  const profile = normalizeProfile(example)
  const key = cacheKey(profile, 'en', { prefix: 'narr' })
  t.match(PROMPT_HASH, /^[0-9a-f]{10}$/)
  t.equal(key, `narr:v1:${ENGINE_VERSION}:${NEWEST_PROMPT.version}:gpt-4o:${PROMPT_HASH}:${sha1Hex(canonicalJson(profile) + 'en')}`)
  t.match(key, /^narr:v1:narrative@1\.0\.0:v2:gpt-4o:[0-9a-f]{10}:[0-9a-f]{40}$/)
  t.not(cacheKey(profile, 'en', { prefix: 'narr', promptVersion: 'v1', promptHash: PROMPTS[0].hash }), key, 'the prompt version is part of the key')
  t.not(cacheKey(profile, 'en', { prefix: 'narr', model: 'gpt-4o-mini' }), key, 'the model is part of the key')
  t.match(cacheKey(profile, 'en', { prefix: 'narr', model: 'a:b*c?[d]' }), /:a_b_c__d_:/, 'a model name never adds a separator or a glob character')
  t.not(cacheKey(profile, 'fr', { prefix: 'narr' }), key, 'locale is part of the key')
  t.equal(cacheKey(profile, canonicalLocale('EN') as string, { prefix: 'narr' }), key, 'locale case does not split entries (the key is built from the canonical tag)')
  t.not(cacheKey(profile, 'en', { prefix: 'staging' }), key, 'prefix isolates namespaces')
  t.not(cacheKey(profile, 'en', { prefix: 'narr', promptHash: '0123456789' }), key, 'a prompt change changes every key')
  t.not(cacheKey(profile, 'en', { prefix: 'narr', engineVersion: 'narrative@1.0.1' }), key, 'an engine bump changes every key')
})

t.test('nulls are removed and userId-like extras never reach the key', async t => {
  const withNulls = { ...example, hybrid: null } as unknown as Profile
  t.equal(profileHash(normalizeProfile(withNulls), 'en'), profileHash(normalizeProfile(example), 'en'))
})

t.test('the prompt carries the normalized profile and the locale', async t => {
  const messages = buildMessages(normalizeProfile(example), 'fr')
  t.equal(messages.length, 2)
  t.match(messages[1].content, /"locale":"fr"/)
  t.match(messages[1].content, /"Arcturus":42\.0/)
})

t.test('prompts: v1 and v2 are shipped, v1 is the prompt as it was before versions, each file is checked', async t => {
  t.same(PROMPTS.map(p => p.version), ['v1', 'v2'])
  t.equal(NEWEST_PROMPT.version, 'v2')
  t.equal(promptVersion('v1')?.hash, '7b88b74b1c', 'v1 is byte for byte the prompt before versions (same hash)')
  t.not(promptVersion('v2')?.hash, promptVersion('v1')?.hash)
  const v1 = buildMessages(normalizeProfile(example), 'fr', promptVersion('v1'))
  t.match(v1[1].content, /^Write the narrative for the profile below\.\n<profile-data>\n\{"locale":"fr"/)
  const good = '## system\nsee <profile-data> and </profile-data>\n## user\nGo.\n{{data}}'
  t.equal(parsePromptFile('v3', good).version, 'v3')
  t.throws(() => parsePromptFile('three', good), /file name/)
  t.throws(() => parsePromptFile('v3', '## system\nhello\n## user\n{{data}}'), /delimiters/)
  t.throws(() => parsePromptFile('v3', '## system\n<profile-data></profile-data>\n## user\nno slot'), /exactly once/)
  t.throws(() => parsePromptFile('v3', '## system\n<profile-data></profile-data>\n## user\n{{data}} {{name}}'), /no placeholder/)
  t.throws(() => parsePromptFile('v3', '## system\n<profile-data></profile-data>'), /user/)
  t.throws(() => parsePromptFile('v3', good + '\n## notes\nx'), /unknown section/)
})

// Canonical names: no trailing or doubled spaces (those are trimmed, so "a" and "a " would be one name given twice).
const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9 '-]{0,12}$/).filter(n => n === n.trim() && !n.includes('  '))
const percent = fc.double({ min: 0, max: 100, noNaN: true, noDefaultInfinity: true })
const profileArb: fc.Arbitrary<Profile> = fc.record({
  classification: fc.constantFrom('primary', 'hybrid', 'unresolved') as fc.Arbitrary<Profile['classification']>,
  percentages: fc.dictionary(name, percent, { minKeys: 1, maxKeys: 8 })
})

function shuffleKeys<T extends object> (obj: T, seed: number): T {
  const entries = Object.entries(obj)
  const order = entries.map((e, i) => ({ e, r: Math.sin(seed + i) })).sort((a, b) => a.r - b.r).map(x => x.e)
  return Object.fromEntries(order) as T
}

t.test('property: key order never matters', async t => {
  fc.assert(fc.property(profileArb, fc.integer(), (p, seed) => {
    const shuffled = shuffleKeys({ ...p, percentages: shuffleKeys(p.percentages, seed) }, seed + 1)
    return profileHash(normalizeProfile(shuffled), 'en') === profileHash(normalizeProfile(p), 'en')
  }))
  t.pass('held for every generated profile')
})

t.test('property: values inside one 0.5 bucket share a key; neighbouring buckets do not', async t => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 199 }), fc.double({ min: 0, max: 0.499, noNaN: true }), fc.double({ min: 0, max: 0.499, noNaN: true }), (b, x, y) => {
    const base = b / 2
    const a = normalizeProfile({ classification: 'unresolved', percentages: { Vega: base + x } })
    const c = normalizeProfile({ classification: 'unresolved', percentages: { Vega: base + y } })
    const next = normalizeProfile({ classification: 'unresolved', percentages: { Vega: base + 0.5 + x / 2 } })
    return profileHash(a, 'en') === profileHash(c, 'en') && profileHash(a, 'en') !== profileHash(next, 'en')
  }))
  t.pass('held for every bucket')
})

t.test('property: different normalized profiles never share a key (no delimiter tricks)', async t => {
  fc.assert(fc.property(profileArb, profileArb, fc.constantFrom('en', 'fr', 'en-us'), fc.constantFrom('en', 'fr', 'en-us'), (p, q, l1, l2) => {
    const a = normalizeProfile(p)
    const b = normalizeProfile(q)
    const same = canonicalJson(a) === canonicalJson(b) && l1 === l2
    return same === (profileHash(a, l1) === profileHash(b, l2))
  }))
  // Hand-made attempts: a name carrying JSON punctuation, a locale glued onto a name.
  const tricky = [
    normalizeProfile({ classification: 'unresolved', percentages: { 'Vega","Sirius': 10 } }),
    normalizeProfile({ classification: 'unresolved', percentages: { Vega: 10, Sirius: 10 } }),
    normalizeProfile({ classification: 'unresolved', percentages: { Vegaen: 10 } })
  ]
  const hashes = new Set([profileHash(tricky[0], 'en'), profileHash(tricky[1], 'en'), profileHash(tricky[2], ''), profileHash(tricky[2], 'en')])
  t.equal(hashes.size, 4)
})
