import { ENGINE_VERSION, NEWEST_PROMPT } from './prompt.ts'
import type { NormalizedProfile } from './profile.ts'
import { profileHash } from './profile.ts'

export interface KeyOptions {
  prefix: string
  engineVersion?: string
  /** The prompt version (`v2`); the newest by default. */
  promptVersion?: string
  /** Its hash: a prompt file edited in place still changes every key of its version. */
  promptHash?: string
  /** The model that writes the narrative (OPENAI_MODEL), or `template` without one. */
  model?: string
}

/** A model's name as a key segment: anything but letters, digits and . _ @ / - becomes _ (no : or glob character). */
export function modelSegment (model: string): string {
  return model.replace(/[^A-Za-z0-9._@/-]/g, '_').slice(0, 100)
}

/**
 * `{prefix}:v1:{engineVersion}:{promptVersion}:{model}:{promptHash10}:{sha1(normalizedProfile+locale)}`:
 * the model and the prompt version are part of the key (changing either writes new entries,
 * and the entries of the old one stay there for rollback and for the rollout's stale answers).
 */
export function cacheKey (profile: NormalizedProfile, locale: string, options: KeyOptions): string {
  const engine = options.engineVersion ?? ENGINE_VERSION
  const version = options.promptVersion ?? NEWEST_PROMPT.version
  const prompt = options.promptHash ?? NEWEST_PROMPT.hash
  const model = modelSegment(options.model ?? 'gpt-4o')
  return `${options.prefix}:v1:${engine}:${version}:${model}:${prompt}:${profileHash(profile, locale)}`
}

/**
 * The analytics key every refused request is counted under: one key for all,
 * so refusals coalesce into one row a batch and none names a profile.
 */
export function refusedKey (prefix: string): string {
  return `${prefix}:refused`
}
