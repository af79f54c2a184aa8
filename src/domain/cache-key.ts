import { ENGINE_VERSION, PROMPT_HASH } from './prompt.ts'
import type { NormalizedProfile } from './profile.ts'
import { profileHash } from './profile.ts'

export interface KeyOptions {
  prefix: string
  engineVersion?: string
  promptHash?: string
}

/** `{prefix}:v1:{engineVersion}:{promptHash10}:{sha1(normalizedProfile+locale)}` */
export function cacheKey (profile: NormalizedProfile, locale: string, options: KeyOptions): string {
  const engine = options.engineVersion ?? ENGINE_VERSION
  const prompt = options.promptHash ?? PROMPT_HASH
  return `${options.prefix}:v1:${engine}:${prompt}:${profileHash(profile, locale)}`
}

/**
 * The analytics key every refused request is counted under: one key for all,
 * so refusals coalesce into one row a batch and none names a profile.
 */
export function refusedKey (prefix: string): string {
  return `${prefix}:refused`
}
