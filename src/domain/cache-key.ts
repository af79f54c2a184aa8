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
 * Locks live beside the namespace rather than inside the
 * `{prefix}:v1:` part, so a pattern delete of cached narratives never frees a lock.
 */
export function lockKey (key: string): string {
  return `lock:${key}`
}

/**
 * Written by a builder whose model call failed, just before it frees the lock,
 * for waiters that take the freed lock before the 'failed' announcement
 * reaches them. The braces make Redis Cluster hash only the lock's name (cache
 * keys hold no braces of their own), so the marker sits in the lock's slot: its
 * write and the release go to one node on one connection, and keep their order.
 */
export function failedBuildKey (key: string): string {
  return `failed:{${lockKey(key)}}`
}

export function refreshLockKey (key: string): string {
  return `refresh:${key}`
}

/**
 * The analytics key every refused request is counted under: one key for all,
 * so refusals coalesce into one row a batch and none names a profile.
 */
export function refusedKey (prefix: string): string {
  return `${prefix}:refused`
}

/** The channel on which builders announce that a key landed (or failed). */
export function readyChannel (prefix: string): string {
  return `${prefix}:ready`
}
