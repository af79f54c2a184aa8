import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import type { NormalizedProfile } from './profile.ts'
import { canonicalJson } from './profile.ts'

/**
 * Bump when the narrative's shape or the way it is produced changes: it is part
 * of every key, so a bump invalidates every entry at once.
 */
export const ENGINE_VERSION = 'narrative@1.0.0'

/** The lines that open and close the data block of the user message. */
export const DATA_OPEN = '<profile-data>'
export const DATA_CLOSE = '</profile-data>'

/** Where the data block goes in a prompt file's user template. */
const DATA_SLOT = '{{data}}'

/** A prompt version's name: `v` and a number; the highest number is the newest. */
export const PROMPT_VERSION_PATTERN = /^v[1-9][0-9]{0,5}$/

/** One version of the prompt, as loaded from `prompts/{version}.md`. */
export interface PromptVersion {
  /** `v1`, `v2`…: the file's name. */
  readonly version: string
  readonly system: string
  /** The user message's template, with `{{data}}` once where the data block goes. */
  readonly user: string
  /** Ten lowercase hex characters over everything that shapes the model's answer. */
  readonly hash: string
}

export class PromptFileError extends Error {
  override readonly name: string = 'PromptFileError'
  readonly code = 'NARR_PROMPT_INVALID'
}

/**
 * The request as quoted data: one JSON value (names are JSON strings, so a
 * quote cannot end one) inside a delimited block. Names are letters, digits,
 * spaces, ' and - only (the schema, and the catalogue when SYSTEMS is set),
 * so none can hold a line break or the closing delimiter and step out of it.
 */
function dataBlock (profile: NormalizedProfile, locale: string): string {
  return `${DATA_OPEN}\n{"locale":${JSON.stringify(locale)},"profile":${canonicalJson(profile)}}\n${DATA_CLOSE}`
}

/**
 * A prompt file: a comment, then `## system` and `## user` sections. Checked
 * as the server starts: both sections there and non-empty, the system
 * message naming the data block's delimiters (it is what tells the model the
 * block is data, never instructions), the user template holding `{{data}}`
 * exactly once and no other `{{…}}`.
 */
export function parsePromptFile (version: string, text: string): PromptVersion {
  const bad = (why: string): never => { throw new PromptFileError(`prompts/${version}.md: ${why}`) }
  if (!PROMPT_VERSION_PATTERN.test(version)) bad('the file name must be v followed by a number (v1.md, v2.md…)')
  const sections = new Map<string, string[]>()
  let current: string[] | undefined
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    const heading = /^##\s+(\S.*?)\s*$/.exec(line)
    if (heading !== null) {
      const name = heading[1].toLowerCase()
      if (sections.has(name)) bad(`the section "## ${name}" appears twice`)
      current = []
      sections.set(name, current)
    } else {
      current?.push(line)
    }
  }
  for (const name of sections.keys()) if (name !== 'system' && name !== 'user') bad(`unknown section "## ${name}" (only ## system and ## user)`)
  const system = (sections.get('system') ?? []).join('\n').trim()
  const user = (sections.get('user') ?? []).join('\n').trim()
  if (system === '') bad('the "## system" section is missing or empty')
  if (user === '') bad('the "## user" section is missing or empty')
  if (!system.includes(DATA_OPEN) || !system.includes(DATA_CLOSE)) bad(`the system message must name the data block's delimiters ${DATA_OPEN} and ${DATA_CLOSE}`)
  if (user.split(DATA_SLOT).length !== 2) bad(`the user template must hold ${DATA_SLOT} exactly once`)
  if (/\{\{(?!data\}\})/.test(user)) bad(`the user template may hold no placeholder but ${DATA_SLOT}`)
  const hash = createHash('sha256')
    .update(system)
    .update('\u0000')
    .update(user.replace(DATA_SLOT, dataBlock({ classification: 'unresolved', percentages: {} }, '{locale}')))
    .digest('hex')
    .slice(0, 10)
  return Object.freeze({ version, system, user, hash })
}

/** Every version in a folder of prompt files (`v1.md`, `v2.md`…), oldest first. */
export function loadPrompts (dir: string | URL): PromptVersion[] {
  let files: string[]
  try {
    files = readdirSync(dir).filter(f => f.endsWith('.md')).sort()
  } catch (err) {
    throw new PromptFileError(`the prompts folder cannot be read: ${(err as Error).message}`)
  }
  const prompts = files.map(file => {
    const version = file.slice(0, -3)
    return parsePromptFile(version, readFileSync(new URL(file, dir instanceof URL ? dir : `file://${dir}/`), 'utf8'))
  })
  if (prompts.length === 0) throw new PromptFileError('the prompts folder holds no prompt file (v1.md…)')
  return prompts.sort((a, b) => versionNumber(a.version) - versionNumber(b.version))
}

export function versionNumber (version: string): number {
  return Number(version.slice(1))
}

/** The shipped prompts (`prompts/` at the repository's root, `dist/prompts` in the image), read once as the server starts. */
export const PROMPTS: readonly PromptVersion[] = Object.freeze(loadPrompts(new URL('../../prompts/', import.meta.url)))
export const PROMPT_VERSIONS: readonly string[] = PROMPTS.map(p => p.version)
/** The newest version: PROMPT_VERSION's default. */
export const NEWEST_PROMPT: PromptVersion = PROMPTS[PROMPTS.length - 1]

export function promptVersion (version: string): PromptVersion | undefined {
  return PROMPTS.find(p => p.version === version)
}

/** The newest prompt's texts and hash (what a caller that names no version gets). */
export const SYSTEM_PROMPT = NEWEST_PROMPT.system
export const PROMPT_HASH = NEWEST_PROMPT.hash

export function userPrompt (profile: NormalizedProfile, locale: string, prompt: PromptVersion = NEWEST_PROMPT): string {
  return prompt.user.replace(DATA_SLOT, () => dataBlock(profile, locale))
}

export interface ChatMessage { role: 'system' | 'user', content: string }

export function buildMessages (profile: NormalizedProfile, locale: string, prompt: PromptVersion = NEWEST_PROMPT): ChatMessage[] {
  return [
    { role: 'system', content: prompt.system },
    { role: 'user', content: userPrompt(profile, locale, prompt) }
  ]
}
