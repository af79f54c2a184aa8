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

/** Buckets of the canary split: a key's bucket is the first 32 bits of its profile hash, modulo this. */
const BUCKETS = 10_000

/**
 * Which prompt version writes a key, and the key it makes: the active
 * version, or the canary's for a stable share of keys (the same profile and
 * locale always land on the same side, on every instance). Also the keys the
 * other versions gave the same request: where the rollout looks for an
 * older entry to answer with.
 */
export class PromptSelection {
  readonly active: PromptVersion
  readonly canary: { prompt: PromptVersion, percent: number } | undefined
  readonly known: readonly PromptVersion[]
  private readonly options: PromptSelectionOptions

  constructor (options: PromptSelectionOptions) {
    this.options = options
    this.active = options.active ?? NEWEST_PROMPT
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

  keyFor (profile: NormalizedProfile, locale: string, prompt: PromptVersion): string {
    return cacheKey(profile, locale, { prefix: this.options.prefix, promptVersion: prompt.version, promptHash: prompt.hash, model: this.options.model })
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
