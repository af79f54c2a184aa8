import type { Narrative } from './narrative.js'

/**
 * A narrative as the text a stream shows: the summary, then the bullets as
 * "- " lines after a blank line. Deltas of a stream concatenate to exactly this.
 */
export function narrativeText (n: Narrative): string {
  return n.bullets.length === 0 ? n.summary : `${n.summary}\n\n${n.bullets.map(b => `- ${b}`).join('\n')}`
}

/**
 * Closes whatever is open at the end of a JSON prefix (a string, arrays,
 * objects) so that it parses, dropping a dangling key, colon, comma or a
 * half-written escape or literal. Undefined when nothing sensible can be made.
 */
export function closePartialJson (prefix: string): unknown {
  const stack: string[] = []
  let inString = false
  let escaped = false
  // Where an escape that is still incomplete at the end began, and how many \u digits it lacks.
  let escapeStart = -1
  let hexLeft = 0
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i]
    if (inString) {
      if (hexLeft > 0) {
        if (--hexLeft === 0) escapeStart = -1
      } else if (escaped) {
        escaped = false
        if (c === 'u') hexLeft = 4
        else escapeStart = -1
      } else if (c === '\\') {
        escaped = true
        escapeStart = i
      } else if (c === '"') {
        inString = false
      }
      continue
    }
    if (c === '"') inString = true
    else if (c === '{' || c === '[') stack.push(c)
    else if (c === '}' || c === ']') stack.pop()
  }
  let text = prefix
  if (inString) {
    // Drop a half-written escape (\ or \uXX), then close the string.
    if (escapeStart !== -1) text = text.slice(0, escapeStart)
    text += '"'
  }
  const closers = stack.reverse().map(c => (c === '{' ? '}' : ']')).join('')
  // Try as is, then without a trailing fragment that cannot stand alone.
  const attempts = [
    text + closers,
    text.replace(/,\s*$/, '') + closers,
    text.replace(/,?\s*"(?:[^"\\]|\\.)*"\s*:?\s*$/, '') + closers,
    text.replace(/,?\s*"(?:[^"\\]|\\.)*"\s*:\s*[a-z0-9.+-]*$/i, '') + closers
  ]
  for (const attempt of attempts) {
    try {
      return JSON.parse(attempt)
    } catch {}
  }
  return undefined
}

/**
 * The narrative text so far, from the model's JSON as it streams in: what can
 * be shown before the model has finished. Only a summary (and then bullets)
 * that are strings count; anything else shows nothing yet.
 */
export function partialNarrativeText (rawPrefix: string): string {
  const value = closePartialJson(rawPrefix)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ''
  const { summary, bullets } = value as { summary?: unknown, bullets?: unknown }
  if (typeof summary !== 'string') return ''
  const list = Array.isArray(bullets) ? bullets.filter((b): b is string => typeof b === 'string') : []
  if (list.length === 0) return summary
  return `${summary}\n\n${list.map(b => `- ${b}`).join('\n')}`
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
