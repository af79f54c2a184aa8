/** What a narrator writes and what the route answers. */
export interface Narrative {
  summary: string
  bullets: string[]
}

export class NarrativeFormatError extends Error {
  override readonly name: string = 'NarrativeFormatError'
  readonly code = 'NARR_MODEL_OUTPUT_INVALID'
}

const MAX_SUMMARY = 20_000
const MAX_BULLETS = 20

/**
 * Model output is untrusted text: accept only a JSON object with a non-empty
 * summary and string bullets, so nothing malformed is ever cached as an answer.
 */
export function parseNarrative (content: string | null | undefined): Narrative {
  if (typeof content !== 'string' || content.trim() === '') throw new NarrativeFormatError('the model returned no content')
  let value: unknown
  try {
    value = JSON.parse(content)
  } catch {
    throw new NarrativeFormatError('the model returned content that is not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NarrativeFormatError('the model returned JSON that is not an object')
  const { summary, bullets } = value as Record<string, unknown>
  if (typeof summary !== 'string' || summary.trim() === '') throw new NarrativeFormatError('the model returned no summary')
  if (summary.length > MAX_SUMMARY) throw new NarrativeFormatError('the model returned an oversized summary')
  const list = bullets === undefined ? [] : bullets
  if (!Array.isArray(list) || list.length > MAX_BULLETS || !list.every(b => typeof b === 'string')) {
    throw new NarrativeFormatError('the model returned bullets that are not a list of strings')
  }
  // Kept exactly as written: a streamed narrative's deltas must add up to the stored text.
  return { summary, bullets: list as string[] }
}
