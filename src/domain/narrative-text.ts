import { NARRATIVE_LIMITS, type Narrative } from './narrative.ts'

/**
 * A narrative as the text a stream shows: the summary, then the bullets as
 * "- " lines after a blank line. Deltas of a stream concatenate to exactly this.
 */
export function narrativeText (n: Narrative): string {
  return n.bullets.length === 0 ? n.summary : `${n.summary}\n\n${n.bullets.map(b => `- ${b}`).join('\n')}`
}

/** Where a NarrativeTextStream is in the reply. */
type Mode =
  | 'start' // before the object's "{"
  | 'key-or-end' // in the object: a key, or "}"
  | 'key' // in a key's string
  | 'colon'
  | 'value' // a value is next, of the key just read
  | 'after-value' // "," or "}"
  | 'summary' // in the summary's string
  | 'bullets' // in the bullets' list: a string, "," or "]"
  | 'bullet' // in a bullet's string
  | 'skip' // in the value of a key we do not show
  | 'done' // after the object
  | 'mute' // a shape we do not stream: the final parse decides

const ESCAPED: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }
const isSpace = (c: string): boolean => c === ' ' || c === '\n' || c === '\r' || c === '\t'
const isHighSurrogate = (c: string): boolean => c >= '\uD800' && c <= '\uDBFF'
/** Keys longer than this are none of ours: only their first characters are kept. */
const KEY_CHARS = 16

/**
 * Reads a model's JSON reply as it streams in, one piece at a time, and gives
 * the narrative text each piece adds: the summary, then each bullet after
 * "\n\n- " or "\n- ", as narrativeText() lays them out. It keeps its place
 * between pieces and looks at each character once, so the work is linear in
 * the reply's length (re-parsing the whole reply at every piece was quadratic:
 * a 64,000-character reply in 4-character pieces blocked the process for
 * seconds). It checks NARRATIVE_LIMITS as it goes: `overLimit` says which one
 * the reply passed, and nothing past it is read.
 *
 * It shows only the expected shape, an object whose summary string comes
 * before its list of bullet strings; on anything else it falls silent
 * (`muted`) and what remains is judged by parseNarrative on the whole reply.
 * It does not validate: text it showed may still belong to a reply refused at
 * the end. A high surrogate is held back until its pair arrives, so a piece
 * never ends in half a character.
 */
export class NarrativeTextStream {
  /** The limit the reply passed, in words; undefined while within them. */
  overLimit: string | undefined
  private mode: Mode = 'start'
  private rawChars = 0
  /** The key being read, and the key whose value comes next. */
  private key = ''
  private valueOf = ''
  /** In a string: -1 outside an escape, 0 just after "\\", 1 to 4 the \u digits read so far. */
  private escape = -1
  private hex = 0
  private heldHigh = ''
  private summarySeen = false
  private bulletsSeen = false
  private stringChars = 0
  private bulletCount = 0
  /** Skipping a value: its depth of nesting, and whether in a string of it. */
  private depth = 0
  private skipString = false
  private skipEscaped = false

  get muted (): boolean {
    return this.mode === 'mute'
  }

  /** Reads the next piece of the reply; returns the text it adds ('' when none). */
  push (piece: string): string {
    if (this.overLimit !== undefined) return ''
    let end = piece.length
    if (this.rawChars + piece.length > NARRATIVE_LIMITS.replyChars) end = NARRATIVE_LIMITS.replyChars - this.rawChars
    this.rawChars += piece.length
    let out = ''
    for (let i = 0; i < end && this.overLimit === undefined && this.mode !== 'mute'; i++) out += this.step(piece[i])
    if (end < piece.length && this.overLimit === undefined) this.overLimit = `a reply over ${NARRATIVE_LIMITS.replyChars} characters`
    return this.overLimit === undefined ? out : ''
  }

  /** One character of the reply; returns the text it adds. */
  private step (c: string): string {
    switch (this.mode) {
      case 'summary':
      case 'bullet':
        return this.stringChar(c)
      case 'skip':
        this.skipChar(c)
        return ''
      case 'key':
        this.keyChar(c)
        return ''
      case 'done':
      case 'mute':
        return ''
    }
    if (isSpace(c)) return ''
    switch (this.mode) {
      case 'start':
        this.mode = c === '{' ? 'key-or-end' : 'mute'
        return ''
      case 'key-or-end':
        if (c === '"') {
          this.mode = 'key'
          this.key = ''
        } else {
          this.mode = c === '}' ? 'done' : 'mute'
        }
        return ''
      case 'colon':
        this.mode = c === ':' ? 'value' : 'mute'
        return ''
      case 'after-value':
        this.mode = c === ',' ? 'key-or-end' : c === '}' ? 'done' : 'mute'
        return ''
      case 'value':
        return this.valueStart(c)
      case 'bullets':
        return this.bulletsChar(c)
    }
    return ''
  }

  private valueStart (c: string): string {
    if (this.valueOf === 'summary') {
      // Shown only as the first of the two, and once: JSON.parse would keep a second one.
      if (c !== '"' || this.summarySeen || this.bulletsSeen) return this.mute()
      this.summarySeen = true
      this.mode = 'summary'
      this.stringChars = 0
      return ''
    }
    if (this.valueOf === 'bullets') {
      if (c !== '[' || !this.summarySeen || this.bulletsSeen) return this.mute()
      this.bulletsSeen = true
      this.mode = 'bullets'
      return ''
    }
    this.mode = 'skip'
    this.depth = 0
    this.skipString = false
    this.skipEscaped = false
    this.skipChar(c)
    return ''
  }

  private bulletsChar (c: string): string {
    if (c === ',') return ''
    if (c === ']') {
      this.mode = 'after-value'
      return ''
    }
    if (c !== '"') return this.mute()
    if (++this.bulletCount > NARRATIVE_LIMITS.bullets) {
      this.overLimit = `more than ${NARRATIVE_LIMITS.bullets} bullets`
      return ''
    }
    this.mode = 'bullet'
    this.stringChars = 0
    return this.bulletCount === 1 ? '\n\n- ' : '\n- '
  }

  /** A character inside the summary or a bullet: decoded, counted, shown. */
  private stringChar (c: string): string {
    let decoded: string
    if (this.escape === 0) {
      if (c === 'u') {
        this.escape = 1
        this.hex = 0
        return ''
      }
      const plain = ESCAPED[c]
      if (plain === undefined) return this.mute()
      this.escape = -1
      decoded = plain
    } else if (this.escape > 0) {
      const digit = Number.parseInt(c, 16)
      if (Number.isNaN(digit)) return this.mute()
      this.hex = this.hex * 16 + digit
      if (this.escape++ < 4) return ''
      this.escape = -1
      decoded = String.fromCharCode(this.hex)
    } else if (c === '\\') {
      this.escape = 0
      return ''
    } else if (c === '"') {
      this.mode = this.mode === 'summary' ? 'after-value' : 'bullets'
      const held = this.heldHigh
      this.heldHigh = ''
      return held
    } else {
      decoded = c
    }
    const limit = this.mode === 'summary' ? NARRATIVE_LIMITS.summaryChars : NARRATIVE_LIMITS.bulletChars
    if (++this.stringChars > limit) {
      this.overLimit = this.mode === 'summary' ? `a summary over ${limit} characters` : `a bullet over ${limit} characters`
      return ''
    }
    if (isHighSurrogate(decoded)) {
      const held = this.heldHigh
      this.heldHigh = decoded
      return held
    }
    const text = this.heldHigh + decoded
    this.heldHigh = ''
    return text
  }

  private keyChar (c: string): void {
    if (this.skipEscaped) {
      this.skipEscaped = false
    } else if (c === '\\') {
      // An escaped key is none of ours (ours are plain words): kept apart from them.
      this.skipEscaped = true
      this.key = '\\'
    } else if (c === '"') {
      this.mode = 'colon'
      this.valueOf = this.key
    } else if (this.key.length < KEY_CHARS) {
      this.key += c
    }
  }

  /** A character of a value we do not show: strings, numbers, literals, nested objects and lists. */
  private skipChar (c: string): void {
    if (this.skipString) {
      if (this.skipEscaped) this.skipEscaped = false
      else if (c === '\\') this.skipEscaped = true
      else if (c === '"') {
        this.skipString = false
        if (this.depth === 0) this.mode = 'after-value'
      }
      return
    }
    if (c === '"') this.skipString = true
    else if (c === '{' || c === '[') this.depth++
    else if (c === '}' || c === ']') {
      if (this.depth === 0) {
        // The end of the object, after a number or a literal.
        this.mode = c === '}' ? 'done' : 'mute'
        return
      }
      if (--this.depth === 0) this.mode = 'after-value'
    } else if (c === ',' && this.depth === 0) {
      this.mode = 'key-or-end'
    }
  }

  private mute (): string {
    this.mode = 'mute'
    return ''
  }
}

/**
 * Splits text into pieces of about `size` characters, cutting after a space
 * where it can, so a cached narrative streams as a few readable deltas.
 */
export function chunkText (text: string, size = 80): string[] {
  const chunks: string[] = []
  let rest = text
  while (rest.length > size) {
    const space = rest.lastIndexOf(' ', size)
    const cut = space > size / 2 ? space + 1 : size
    chunks.push(rest.slice(0, cut))
    rest = rest.slice(cut)
  }
  if (rest !== '') chunks.push(rest)
  return chunks
}
