import type { NarrativeEngine, Resolution } from './cache/narrative-engine.js'
import type { NegativeCache } from './cache/negative-cache.js'
import { cacheKey } from './domain/cache-key.js'
import { normalizeLocale, normalizeProfile, type Profile } from './domain/profile.js'
import { ENGINE_VERSION } from './domain/prompt.js'
import { profileRuleViolation } from './domain/rules.js'
import { InvalidProfileError } from './errors.js'
import type { NarrativeRequest, NarrativeResponse } from './schemas/narrative.js'

export interface ServedNarrative {
  body: NarrativeResponse
  resolution: Resolution
}

/**
 * The request path between the route and the engine: normalize, build the
 * key, refuse known-bad profiles from memory, check the domain rules, then ask
 * the engine. No Fastify here.
 */
export class NarrativeService {
  constructor (
    private readonly engine: NarrativeEngine,
    private readonly negative: NegativeCache,
    private readonly prefix: string,
    private readonly clock: () => number = Date.now
  ) {}

  keyOf (request: NarrativeRequest): { key: string, profile: ReturnType<typeof normalizeProfile>, locale: string } {
    const profile = normalizeProfile(request.profile as Profile)
    const locale = normalizeLocale(request.locale ?? 'en')
    return { key: cacheKey(profile, locale, { prefix: this.prefix }), profile, locale }
  }

  async serve (request: NarrativeRequest): Promise<ServedNarrative> {
    const job = this.keyOf(request)
    const known = this.negative.recall(job.key)
    if (known !== undefined) throw new InvalidProfileError(known)
    const rawTotal = Object.values(request.profile.percentages).reduce((sum, v) => sum + v, 0)
    const violation = profileRuleViolation(job.profile, rawTotal)
    if (violation !== null) {
      this.negative.remember(job.key, violation)
      throw new InvalidProfileError(violation)
    }
    const resolution = await this.engine.resolve(job)
    return { body: this.toBody(resolution), resolution }
  }

  private toBody (r: Resolution): NarrativeResponse {
    return {
      narrative: r.narrative,
      cache: { status: r.status, key: r.key, ageSeconds: Math.max(0, Math.floor((this.clock() - r.writtenAt) / 1000)) },
      engine: r.engine,
      version: ENGINE_VERSION
    }
  }
}
