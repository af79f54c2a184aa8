import { PermitDeniedError, type NarrativeEngine, type NarrativeJob, type Resolution } from './cache/narrative-engine.js'
import type { NegativeCache } from './cache/negative-cache.js'
import { GenerationLimitExceeded, type GenerationLimiter } from './cache/generation-limiter.js'
import type { AnalyticsEvent } from './analytics/event.js'
import { cacheKey } from './domain/cache-key.js'
import { normalizeLocale, normalizeProfile, systemsByWeight, type NormalizedProfile, type Profile } from './domain/profile.js'
import { ENGINE_VERSION } from './domain/prompt.js'
import { profileRuleViolation } from './domain/rules.js'
import { GenerationRateLimitedError, InvalidProfileError } from './errors.js'
import type { NarrativeRequest, NarrativeResponse } from './schemas/narrative.js'

export interface ServedNarrative {
  body: NarrativeResponse
  resolution: Resolution
}

/** Where request events go: the analytics buffer, which never blocks. */
export interface EventRecorder {
  record: (event: AnalyticsEvent) => void
}

export interface NarrativeServiceDeps {
  engine: NarrativeEngine
  negative: NegativeCache
  prefix: string
  limiter?: GenerationLimiter
  recorder?: EventRecorder
  clock?: () => number
}

export interface RequestContext {
  /** The client address, for the generation rate limit. */
  clientIp: string
}

/** The 429 a rate-limited generation answers with, Retry-After included. */
function rateLimited (err: GenerationLimitExceeded): Error {
  return Object.assign(new GenerationRateLimitedError(err.limit, err.retryAfterSeconds), { retryAfterSeconds: err.retryAfterSeconds })
}

/**
 * The request path between the route and the engine: normalize, build the
 * key, refuse known-bad profiles from memory, check the domain rules, ask the
 * engine (with this client's generation permit), and record what happened.
 * No Fastify here.
 */
export class NarrativeService {
  private readonly clock: () => number

  constructor (private readonly deps: NarrativeServiceDeps) {
    this.clock = deps.clock ?? Date.now
  }

  keyOf (request: NarrativeRequest): NarrativeJob {
    const profile = normalizeProfile(request.profile as Profile)
    const locale = normalizeLocale(request.locale ?? 'en')
    return { key: cacheKey(profile, locale, { prefix: this.deps.prefix }), profile, locale }
  }

  async serve (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }): Promise<ServedNarrative> {
    return await this.execute(this.prepare(request, context), request.userId)
  }

  /**
   * Everything that can refuse a request before any answer starts: the key,
   * the negative cache, the domain rules (400), and the generation permit.
   */
  prepare (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }): NarrativeJob {
    const job = this.keyOf(request)
    const known = this.deps.negative.recall(job.key)
    if (known !== undefined) throw new InvalidProfileError(known)
    const rawTotal = Object.values(request.profile.percentages).reduce((sum, v) => sum + v, 0)
    const violation = profileRuleViolation(job.profile, rawTotal)
    if (violation !== null) {
      this.deps.negative.remember(job.key, violation)
      this.record('error', job, request.userId)
      throw new InvalidProfileError(violation)
    }
    const limiter = this.deps.limiter
    if (limiter?.enabled === true) job.permit = async ({ storeHealthy }) => { await limiter.take(context.clientIp, storeHealthy) }
    return job
  }

  /** Asks the engine for a prepared job and records what happened. */
  async execute (job: NarrativeJob, userId?: string): Promise<ServedNarrative> {
    let resolution: Resolution
    try {
      resolution = await this.deps.engine.resolve(job)
    } catch (err) {
      this.record('error', job, userId)
      if (err instanceof PermitDeniedError && err.reason instanceof GenerationLimitExceeded) throw rateLimited(err.reason)
      throw err
    }
    this.record(resolution.status, job, userId)
    return { body: this.toBody(resolution), resolution }
  }

  private record (event: AnalyticsEvent['event'], job: { key: string, profile: NormalizedProfile, locale: string }, userId: string | undefined): void {
    this.deps.recorder?.record({
      at: this.clock(),
      event,
      key: job.key,
      systems: systemsOf(job.profile),
      userId: userId ?? null,
      profile: job.profile,
      locale: job.locale
    })
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

/** System names, most prominent first: the primary, then by share. */
export function systemsOf (profile: NormalizedProfile): string[] {
  const names = systemsByWeight(profile).map(s => s.name)
  if (profile.primary !== undefined) return [profile.primary, ...names.filter(n => n !== profile.primary)]
  return names
}
