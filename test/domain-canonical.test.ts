import t from 'tap'
import { canonicalLocale, servedLocale } from '../src/domain/locale.ts'
import { SystemCatalogue, canonicalName } from '../src/domain/systems.ts'
import { canonicalRequest } from '../src/domain/canonical.ts'
import { RefusedInputError, canonicalJson, normalizeProfile, type Profile } from '../src/domain/profile.ts'
import { isStoredRequest } from '../src/schemas/stored-request.ts'
import { lenientUserPath } from '../src/admin/user-path.ts'
import { exactText } from '../src/db/sanitize.ts'

t.test('locales: one canonical tag, invalid ones undefined; served locales by RFC 4647 lookup', async t => {
  t.equal(canonicalLocale('EN-us'), 'en-US')
  t.equal(canonicalLocale('iw'), 'he', 'a deprecated code is its replacement')
  t.equal(canonicalLocale('zh-hant-tw'), 'zh-Hant-TW')
  t.equal(canonicalLocale('en-zz99'), undefined)
  // Remembered answers are the same answers, valid or not, past the memory's bound too.
  t.equal(canonicalLocale('EN-us'), 'en-US')
  t.equal(canonicalLocale('en-zz99'), undefined)
  const icu = (tag: string): string | undefined => { try { return Intl.getCanonicalLocales(tag)[0] } catch { return undefined } }
  const tags = Array.from({ length: 1100 }, (_, i) => i % 2 === 0 ? `EN-x-t${i}` : `en-${i}zz`)
  let mismatches = 0
  for (let round = 0; round < 2; round++) for (const tag of tags) if (canonicalLocale(tag) !== icu(tag)) mismatches++
  t.equal(mismatches, 0, '1,100 tags twice, valid and invalid: every answer is ICU\'s')
  t.ok(tags.some(tag => icu(tag) === undefined) && tags.some(tag => icu(tag) !== undefined), 'both kinds were asked')
  t.equal(canonicalLocale('iw'), 'he')
  const served = new Set(['en', 'zh-Hant', 'fr-CA'])
  t.equal(servedLocale('en-GB', served), 'en')
  t.equal(servedLocale('zh-Hant-TW', served), 'zh-Hant')
  t.equal(servedLocale('en-US-x-twain', served), 'en', 'a singleton and its subtag go together')
  t.equal(servedLocale('fr', served), undefined, 'lookup only truncates: fr is not fr-CA')
  t.equal(servedLocale('de', served), undefined)
})

t.test('system names: trimmed and spaces made one; the catalogue gives one spelling and knows no other name', async t => {
  t.equal(canonicalName('  Alpha   Centauri '), 'Alpha Centauri')
  const catalogue = new SystemCatalogue(['Vega', 'Alpha Centauri'])
  t.equal(catalogue.spellingOf('VEGA '), 'Vega')
  t.equal(catalogue.spellingOf('alpha  centauri'), 'Alpha Centauri')
  t.equal(catalogue.spellingOf('Zeta'), undefined)
  t.throws(() => new SystemCatalogue(['Vega', 'vega']), /twice/)
  t.throws(() => new SystemCatalogue([]), /no system/)
})

t.test('canonicalRequest: one form per meaning, refusals name the field', async t => {
  const systems = new SystemCatalogue(['Vega', 'Sirius', 'Rigel'])
  const a = canonicalRequest({ classification: 'hybrid', hybrid: ['SIRIUS', 'vega'], percentages: { vega: 40.2, SIRIUS: 30, Rigel: 0.4 } }, 'EN-gb', { systems, locales: new Set(['en']) })
  const b = canonicalRequest({ classification: 'hybrid', hybrid: ['Vega', 'Sirius'], percentages: { Sirius: 30.4, Vega: 40 } }, 'en', { systems, locales: new Set(['en']) })
  t.equal(canonicalJson(a.profile), canonicalJson(b.profile))
  t.equal(canonicalJson(a.profile), '{"classification":"hybrid","hybrid":["Sirius","Vega"],"percentages":{"Sirius":30.0,"Vega":40.0}}')
  t.equal(a.locale, 'en')
  const refused = (profile: Profile, locale = 'en'): RefusedInputError => {
    try {
      canonicalRequest(profile, locale, { systems })
    } catch (err) {
      if (err instanceof RefusedInputError) return err
      throw err
    }
    throw new Error('not refused')
  }
  t.match(refused({ classification: 'unresolved', percentages: { Zeta: 1 } }), { field: 'profile', message: /profile\.percentages names an unknown system 'Zeta'/ })
  t.match(refused({ classification: 'hybrid', hybrid: ['Vega', 'Zeta'], percentages: { Vega: 1 } }), { message: /profile\.hybrid names an unknown system 'Zeta'/ })
  t.match(refused({ classification: 'unresolved', percentages: { Vega: 1 } }, 'xx-zz99'), { field: 'locale', message: /locale 'xx-zz99'/ })
  t.match(refused({ classification: 'unresolved', percentages: { Vega: 61, Sirius: 40 } }), { message: /sum to 101 once floored/ })
  // 60.9 + 40.4 is 101.3 as given, but 60.5 + 40 = 100.5 once floored: the key's content decides.
  t.doesNotThrow(() => canonicalRequest({ classification: 'unresolved', percentages: { Vega: 60.9, Sirius: 40.4 } }, 'en', { systems }))
})

t.test('normalizeProfile without a catalogue keeps the case of names: they are labels', async t => {
  const p = normalizeProfile({ classification: 'unresolved', percentages: { VEGA: 10, Vega: 10 } })
  t.same(Object.keys(p.percentages), ['VEGA', 'Vega'])
})

t.test('isStoredRequest: the request schema for rows read back from the database', async t => {
  const ok = { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 40 } }, locale: 'en' }
  t.equal(isStoredRequest(ok), true)
  const bad: unknown[] = [
    { ...ok, locale: 'english please' },
    { ...ok, locale: 7 },
    { ...ok, profile: null },
    { ...ok, profile: { ...ok.profile, extra: 1 } },
    { ...ok, profile: { ...ok.profile, classification: 'major' } },
    { ...ok, profile: { ...ok.profile, primary: 'Vega<script>' } },
    { ...ok, profile: { ...ok.profile, hybrid: ['Vega'] } },
    { ...ok, profile: { ...ok.profile, hybrid: ['Vega', 'Vega'] } },
    { ...ok, profile: { ...ok.profile, percentages: {} } },
    { ...ok, profile: { ...ok.profile, percentages: { constructor: 1 } } },
    { ...ok, profile: { ...ok.profile, percentages: { Vega: '40' } } },
    { ...ok, profile: { ...ok.profile, percentages: { Vega: 101 } } },
    { ...ok, profile: { ...ok.profile, percentages: [40] } }
  ]
  for (const value of bad) t.equal(isStoredRequest(value as { profile: unknown, locale: unknown }), false, JSON.stringify(value))
})

t.test('lenientUserPath: a stray % on the user route is itself; everything else is untouched', async t => {
  t.equal(lenientUserPath({ url: '/api/narrative/user/%' }), '/api/narrative/user/%25')
  t.equal(lenientUserPath({ url: '/api/narrative/user/100%?x=%' }), '/api/narrative/user/100%25?x=%')
  t.equal(lenientUserPath({ url: '/api/narrative/user/%25' }), '/api/narrative/user/%25')
  t.equal(lenientUserPath({ url: '/api/narrative/user/%41' }), '/api/narrative/user/%41', '%41 still means A')
  t.equal(lenientUserPath({ url: '/api/narrative/cache?pattern=%' }), '/api/narrative/cache?pattern=%')
  t.equal(lenientUserPath({ url: '/health/%' }), '/health/%')
  t.equal(lenientUserPath({}), '/')
})

t.test('exactText: the value as given, or null when PostgreSQL would have to change it', async t => {
  t.equal(exactText('ab'), 'ab')
  t.equal(exactText('a\u0000b'), null)
  t.equal(exactText('a\ud800'), null)
  t.equal(exactText('a\ud800'), null, 'twice: no state kept between calls')
  t.equal(exactText('😀'), '😀')
  t.equal(exactText(''), null)
  t.equal(exactText('x'.repeat(11), 10), null, 'too long is not cut (a cut id could be another user)')
  t.equal(exactText(7), null)
})
