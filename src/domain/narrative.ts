/** What a narrator writes and what the route answers. */
export interface Narrative {
  summary: string
  bullets: string[]
}

export class NarrativeFormatError extends Error {
  override readonly name: string = 'NarrativeFormatError'
  readonly code = 'NARR_MODEL_OUTPUT_INVALID'
}

const REPLY_CHARS = 48_000

/**
 * How long a narrative may be. A model reply past any of them is refused, and
 * a streamed reply is cut off as soon as it passes one, not read to its end.
 */
export const NARRATIVE_LIMITS = {
  /** Characters (UTF-16 code units, as String.length counts) of the summary. */
  summaryChars: 20_000,
  bullets: 20,
  /** Characters of one bullet. */
  bulletChars: 1_000,
  /**
   * Characters of the whole JSON reply: the longest valid narrative (20,000 +
   * 20 x 1,000 = 40,000 characters of text) with a fifth more for the JSON
   * around it and its escapes. Bounds what the other limits cannot see
   * (padding, keys we do not read).
   */
  replyChars: REPLY_CHARS,
  /**
   * The model's `max_tokens`: the reply's characters at 3 a token. English
   * runs at about 4, so the longest English narrative is not cut by it; a
   * script of about one token a character (Chinese, Japanese) is cut at about
   * 16,000 characters. Below the 16,384 output tokens of gpt-4o and
   * gpt-4o-mini, which refuse a larger value.
   */
  replyTokens: Math.ceil(REPLY_CHARS / 3)
} as const

/**
 * Model output is untrusted text: accept only a JSON object with a non-empty
 * summary and string bullets, so nothing malformed is ever cached as an answer.
 */
export function parseNarrative (content: string | null | undefined): Narrative {
  if (typeof content !== 'string' || content.trim() === '') throw new NarrativeFormatError('the model returned no content')
  if (content.length > NARRATIVE_LIMITS.replyChars) throw new NarrativeFormatError('the model returned an oversized reply')
  let value: unknown
  try {
    value = JSON.parse(content)
  } catch {
    throw new NarrativeFormatError('the model returned content that is not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NarrativeFormatError('the model returned JSON that is not an object')
  const { summary, bullets } = value as Record<string, unknown>
  if (typeof summary !== 'string' || summary.trim() === '') throw new NarrativeFormatError('the model returned no summary')
  if (summary.length > NARRATIVE_LIMITS.summaryChars) throw new NarrativeFormatError('the model returned an oversized summary')
  const list = bullets === undefined ? [] : bullets
  if (!Array.isArray(list) || list.length > NARRATIVE_LIMITS.bullets || !list.every(b => typeof b === 'string')) {
    throw new NarrativeFormatError('the model returned bullets that are not a list of strings')
  }
  if (list.some(b => b.length > NARRATIVE_LIMITS.bulletChars)) throw new NarrativeFormatError('the model returned an oversized bullet')
  // Kept exactly as written: a streamed narrative's deltas must add up to the stored text.
  return { summary, bullets: list as string[] }
}
