/**
 * The first key named twice in one object of a JSON text, with where it is
 * (`body.profile.percentages`); undefined when there is none. JSON.parse
 * keeps the last of two and drops the other without a word, so a body that
 * says two things is refused instead of silently read as one of them.
 *
 * Only for text JSON.parse has already accepted: the scan trusts its
 * syntax. Keys are compared as parsed (`"Vega"` and `"Ve\u0067a"` are one).
 */
export function duplicateKey (text: string): { key: string, path: string } | undefined {
  // One frame per open object or array: the keys seen (objects), the position (arrays).
  const frames: Array<{ keys?: Set<string>, index: number, name: string }> = []
  // Whether the next string is an object's key (after `{` or a comma in an object).
  let expectKey = false
  // The key just read in the innermost object: the name of the value that follows.
  let lastKey = ''
  // From one character that matters to the next: the rest (numbers, literals, spaces, colons) changes nothing.
  const structural = /["{}[\],]/g
  let found: RegExpExecArray | null
  while ((found = structural.exec(text)) !== null) {
    const i = found.index
    const c = text.charCodeAt(i)
    if (c === 0x22) { // "
      // The closing quote: the next one not escaped (after an even run of backslashes).
      let end = text.indexOf('"', i + 1)
      while (end !== -1 && backslashesBefore(text, end) % 2 === 1) end = text.indexOf('"', end + 1)
      if (end === -1) return undefined // not JSON after all: JSON.parse said so already
      if (expectKey) {
        const raw = text.slice(i + 1, end)
        const key = raw.includes('\\') ? JSON.parse(text.slice(i, end + 1)) as string : raw
        const frame = frames[frames.length - 1]
        if (frame.keys?.has(key) === true) return { key, path: pathOf(frames) }
        frame.keys?.add(key)
        lastKey = key
        expectKey = false
      }
      structural.lastIndex = end + 1
    } else if (c === 0x7b || c === 0x5b) { // { [
      const parent = frames[frames.length - 1]
      const name = parent === undefined ? 'body' : parent.keys !== undefined ? lastKey : `[${parent.index}]`
      frames.push(c === 0x7b ? { keys: new Set(), index: 0, name } : { index: 0, name })
      expectKey = c === 0x7b
    } else if (c === 0x7d || c === 0x5d) { // } ]
      frames.pop()
      expectKey = false
    } else { // ,
      const frame = frames[frames.length - 1]
      frame.index++
      expectKey = frame.keys !== undefined
    }
  }
  return undefined
}

function backslashesBefore (text: string, at: number): number {
  let n = 0
  while (at - n - 1 >= 0 && text.charCodeAt(at - n - 1) === 0x5c) n++
  return n
}

function pathOf (frames: Array<{ name: string }>): string {
  return frames.map((frame, i) => i === 0 || frame.name.startsWith('[') ? frame.name : `.${frame.name}`).join('')
}
