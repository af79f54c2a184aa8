import { createHash } from 'node:crypto'
import type { NormalizedProfile } from './profile.js'
import { canonicalJson } from './profile.js'

/**
 * Bump when the narrative's shape or the way it is produced changes: it is part
 * of every key, so a bump invalidates every entry at once.
 */
export const ENGINE_VERSION = 'narrative@1.0.0'

export const SYSTEM_PROMPT = [
  'You write short, warm narratives about a person\'s star-system profile.',
  'The profile gives a classification (primary, hybrid or unresolved) and the percentage of resonance with each star system.',
  'Answer with a JSON object only: {"summary": string, "bullets": string[]}.',
  'The summary is one paragraph of 60 to 120 words; bullets are 3 to 5 short sentences.',
  'Write in the language of the given locale. Do not invent systems that are not in the profile.'
].join('\n')

export function userPrompt (profile: NormalizedProfile, locale: string): string {
  return `Locale: ${locale}\nProfile: ${canonicalJson(profile)}`
}

/**
 * Ten lowercase hex characters over everything that shapes the model's answer:
 * change the prompt, and every key changes with it.
 */
export const PROMPT_HASH = createHash('sha256')
  .update(SYSTEM_PROMPT)
  .update('\u0000')
  .update(userPrompt({ classification: 'unresolved', percentages: {} }, '{locale}'))
  .digest('hex')
  .slice(0, 10)

export interface ChatMessage { role: 'system' | 'user', content: string }

export function buildMessages (profile: NormalizedProfile, locale: string): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    { role: 'user', content: userPrompt(profile, locale) }
  ]
}
