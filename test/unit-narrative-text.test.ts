import t from 'tap'
import fc from 'fast-check'
import { NarrativeTextStream, narrativeText } from '../src/domain/narrative-text.ts'
import { NARRATIVE_LIMITS, parseNarrative } from '../src/domain/narrative.ts'

/** Feeds `raw` in pieces cut at `cuts`; returns the text shown and the reader. */
function stream (raw: string, cuts: number[] = []): { text: string, reader: NarrativeTextStream } {
  const reader = new NarrativeTextStream()
  let text = ''
  let at = 0
  for (const cut of [...new Set(cuts)].filter(c => c > 0 && c < raw.length).sort((a, b) => a - b).concat(raw.length)) {
    text += reader.push(raw.slice(at, cut))
    at = cut
  }
  return { text, reader }
}

/** JSON.stringify with every character above ASCII (and some below) written as \u escapes, as some models do. */
const escapeAll = (json: string): string => json.replace(/[\u007f-\uffff]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

const text = fc.string({ unit: 'grapheme', maxLength: 60 })
const narrative = fc.record({ summary: text.filter(s => s.trim() !== ''), bullets: fc.array(text, { maxLength: 6 }) })

t.test('streamed in any pieces, a valid reply shows exactly narrativeText() of what parseNarrative keeps', async t => {
  fc.assert(fc.property(
    narrative,
    fc.array(fc.nat({ max: 400 }), { maxLength: 30 }),
    fc.constantFrom<'plain' | 'spaced' | 'escaped' | 'extra keys'>('plain', 'spaced', 'escaped', 'extra keys'),
    (n, cuts, style) => {
      const raw = style === 'spaced'
        ? JSON.stringify(n, null, 2)
        : style === 'escaped'
          ? escapeAll(JSON.stringify(n))
          : style === 'extra keys'
            ? JSON.stringify({ title: { a: ['}', '"', 1] }, summary: n.summary, n: -1.5e3, bullets: n.bullets, tail: null })
            : JSON.stringify(n)
      const { text, reader } = stream(raw, cuts)
      const expected = narrativeText(parseNarrative(raw))
      return text === expected && reader.overLimit === undefined && !reader.muted
    }
  ), { numRuns: 400 })
})

t.test('a surrogate pair split between pieces, or written as two escapes, is never shown in halves', async t => {
  const raw = JSON.stringify({ summary: 'a😀b', bullets: ['😀'] })
  const shown: string[] = []
  const reader = new NarrativeTextStream()
  for (const c of raw.split('')) shown.push(reader.push(c))
  t.equal(shown.join(''), 'a😀b\n\n- 😀')
  t.notOk(shown.some(piece => /[\ud800-\udbff]$/.test(piece)), 'no piece ends in a high surrogate')
  t.equal(stream(escapeAll(raw), [4, 9, 13]).text, 'a😀b\n\n- 😀')
})

t.test('other shapes fall silent (the final parse decides), after showing only what was certain', async t => {
  t.equal(stream('{"bullets":["a"],"summary":"s"}').text, '', 'bullets before the summary: nothing shown')
  t.equal(stream('{"summary":"first","summary":"second"}').text, 'first', 'a second summary is not shown')
  t.ok(stream('{"summary":"first","summary":"second"}').reader.muted)
  t.equal(stream('{"summary":42}').text, '')
  t.equal(stream('["summary"]').text, '')
  t.equal(stream('{"summary":"s","bullets":[1,"b"]}').text, 's', 'a bullet that is not a string')
  t.equal(stream('{"summary":"bad \\x escape"}').text, 'bad ', 'an invalid escape')
})

t.test('limits: the reader says which one the reply passed, at once, and shows nothing past it', async t => {
  const { summaryChars, bulletChars, bullets, replyChars } = NARRATIVE_LIMITS
  const long = stream(JSON.stringify({ summary: 'x'.repeat(summaryChars + 5000) }), [10, 100])
  t.equal(long.reader.overLimit, `a summary over ${summaryChars} characters`)
  t.equal(long.text, 'x'.repeat(100 - '{"summary":"'.length), 'only what came before the piece that passed it')
  t.equal(stream(JSON.stringify({ summary: 'x'.repeat(summaryChars) })).reader.overLimit, undefined, 'the limit itself is allowed')
  t.equal(stream(JSON.stringify({ summary: 's', bullets: ['b'.repeat(bulletChars + 1)] })).reader.overLimit, `a bullet over ${bulletChars} characters`)
  t.equal(stream(JSON.stringify({ summary: 's', bullets: Array(bullets + 1).fill('b') })).reader.overLimit, `more than ${bullets} bullets`)
  t.equal(stream(JSON.stringify({ summary: 's', bullets: Array(bullets).fill('b'.repeat(bulletChars)) })).reader.overLimit, undefined)
  const padded = stream(`{"summary":"s"${' '.repeat(replyChars)}}`, [5000])
  t.equal(padded.reader.overLimit, `a reply over ${replyChars} characters`, 'padding or keys it does not show count too')
  t.equal(padded.reader.push('}'), '', 'nothing is read past a limit')
  const pieces = new NarrativeTextStream()
  t.equal(pieces.push(`{"summary":"s"${' '.repeat(replyChars - 15)}`), 's')
  t.equal(pieces.overLimit, undefined, 'one character below the limit')
  t.equal(pieces.push(' }'), '', 'the piece that passes the reply limit shows nothing')
  t.equal(pieces.overLimit, `a reply over ${replyChars} characters`)
})

t.test('parseNarrative refuses what the reader cuts off: an oversized bullet, an oversized reply', async t => {
  t.throws(() => parseNarrative(JSON.stringify({ summary: 's', bullets: ['b'.repeat(NARRATIVE_LIMITS.bulletChars + 1)] })), /oversized bullet/)
  t.throws(() => parseNarrative(`{"summary":"s"${' '.repeat(NARRATIVE_LIMITS.replyChars)}}`), /oversized reply/)
  t.ok(NARRATIVE_LIMITS.replyTokens <= 16_384, 'max_tokens within what gpt-4o accepts')
})
