import { cacheKey } from '../domain/cache-key.ts'
import { profileHash, type NormalizedProfile } from '../domain/profile.ts'
import { NEWEST_PROMPT, PROMPTS, versionNumber, type PromptVersion } from '../domain/prompt.ts'

export interface PromptSelectionOptions {
  prefix: string
  /** The model that writes (the narrator's engine): part of every key. */
  model: string
  /** PROMPT_VERSION. */
  active?: PromptVersion
  /** PROMPT_CANARY: this share of keys (0 to 100, by key hash) on another version. */
  canary?: { prompt: PromptVersion, percent: number }
  /** Every version there is (the shipped prompts by default). */
  known?: readonly PromptVersion[]
}

/** What wrote an entry, and names its key: a prompt version and a model. */
export interface Writer {
  version: string
  model: string
}

/** A writer as one string (a version holds no space): how the fleet lists the writers that have written. */
export function writerName (writer: Writer): string {
  return `${writer.version} ${writer.model}`
}

/** The writer a name stands for; undefined for a name that is none. */
export function parseWriterName (name: string): Writer | undefined {
  const space = name.indexOf(' ')
  if (space < 1 || space === name.length - 1) return undefined
  return { version: name.slice(0, space), model: name.slice(space + 1) }
}

/** An earlier writer whose entry may answer a request: its prompt (for the key's hash) and its model. */
export interface EarlierWriter {
  prompt: PromptVersion
  model: string
}

/** Buckets of the canary split: a key's bucket is the first 32 bits of its profile hash, modulo this. */
const BUCKETS = 10_000

/**
 * Which prompt version writes a key, and the key it makes: the active
 * version, or the canary's for a stable share of keys (the same profile and
 * locale always land on the same side, on every instance), with today's
 * model. Also the keys earlier writers (another prompt version, another
 * model, or both) gave the same request: where the rollout looks for an
 * older entry to answer with.
 */
export class PromptSelection {
  readonly active: PromptVersion
  /** The model that writes today (OPENAI_MODEL): part of every key. */
  readonly model: string
  readonly canary: { prompt: PromptVersion, percent: number } | undefined
  readonly known: readonly PromptVersion[]
  private readonly options: PromptSelectionOptions

  constructor (options: PromptSelectionOptions) {
    this.options = options
    this.active = options.active ?? NEWEST_PROMPT
    this.model = options.model
    this.known = options.known ?? PROMPTS
    const canary = options.canary
    if (canary !== undefined && !(canary.percent >= 0 && canary.percent <= 100)) throw new Error('canary percent must be from 0 to 100')
    this.canary = canary !== undefined && canary.prompt.version !== this.active.version ? canary : undefined
  }

  /** The version that writes this request's narrative. */
  promptFor (profile: NormalizedProfile, locale: string): PromptVersion {
    const canary = this.canary
    if (canary === undefined) return this.active
    return inCanary(profileHash(profile, locale), canary.percent) ? canary.prompt : this.active
  }

  /** The key a prompt version gives a request, with today's model or another. */
  keyFor (profile: NormalizedProfile, locale: string, prompt: PromptVersion, model = this.model): string {
    return cacheKey(profile, locale, { prefix: this.options.prefix, promptVersion: prompt.version, promptHash: prompt.hash, model })
  }

  /** Whether a writer is the one that writes a key of `prompt` today. */
  isCurrent (writer: Writer, prompt: PromptVersion): boolean {
    return writer.version === prompt.version && writer.model === this.model
  }

  /**
   * Where an earlier answer to a request of `own` may be, in the order to
   * look: of `written` (the writers known to have written here, the most
   * recent first), the same prompt version with another model first (a
   * model change: the same prompt's answer), then the other versions newest
   * first, today's model before the others. A canary key also looks at the
   * active version's entry. Versions with no prompt file here are skipped
   * (their key's hash is unknown).
   */
  earlierWriters (own: PromptVersion, written: readonly Writer[]): EarlierWriter[] {
    const candidates = own.version === this.active.version ? [...written] : [...written, { version: this.active.version, model: this.model }]
    const seen = new Set<string>()
    const found: Array<EarlierWriter & { recency: number }> = []
    candidates.forEach((writer, recency) => {
      const name = writerName(writer)
      if (seen.has(name) || this.isCurrent(writer, own)) return
      seen.add(name)
      const prompt = this.known.find(p => p.version === writer.version)
      if (prompt !== undefined) found.push({ prompt, model: writer.model, recency })
    })
    const other = (w: EarlierWriter): number => w.prompt.version === own.version ? 0 : 1
    const notToday = (w: EarlierWriter): number => w.model === this.model ? 0 : 1
    found.sort((a, b) => other(a) - other(b) || versionNumber(b.prompt.version) - versionNumber(a.prompt.version) || notToday(a) - notToday(b) || a.recency - b.recency)
    return found.map(({ prompt, model }) => ({ prompt, model }))
  }

  /** Every version but `prompt`, newest first: where an earlier answer to the same request may be. */
  others (prompt: PromptVersion): PromptVersion[] {
    return this.known.filter(p => p.version !== prompt.version).sort((a, b) => versionNumber(b.version) - versionNumber(a.version))
  }
}

/** Whether a profile hash (hex) falls in the canary's share: stable, and uniform over keys. */
export function inCanary (hashHex: string, percent: number): boolean {
  return Number.parseInt(hashHex.slice(0, 8), 16) % BUCKETS < Math.round(percent * BUCKETS / 100)
}
