import { PermitDeniedError, type NarrativeEngine, type NarrativeJob, type Resolution } from './cache/narrative-engine.js'
import type { NegativeCache } from './cache/negative-cache.js'
import { GenerationLimitExceeded, type GenerationLimiter } from './cache/generation-limiter.js'
import type { AnalyticsEvent } from './analytics/event.js'
import { LruMap } from './lru-map.js'
import { rateLimitKey } from './client-key.js'
import { cacheKey } from './domain/cache-key.js'
import { normalizeLocale, normalizeProfile, systemsByWeight, type NormalizedProfile, type Profile } from './domain/profile.js'
import { ENGINE_VERSION } from './domain/prompt.js'
import { profileRuleViolation } from './domain/rules.js'
import { GenerationGlobalLimitedError, GenerationRateLimitedError, InvalidProfileError } from './errors.js'
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
  /**
   * The JSON text the request was parsed from, when the caller has it. The
   * same text always gives the same key, profile and rule check, so those are
   * remembered by it: a repeated body skips normalization and hashing.
   */
  bodyText?: string
}

/** A job as prepare() makes it: with the profile's systems, for the analytics event. */
export interface PreparedJob extends NarrativeJob {
  systems?: readonly string[]
}

/** What a request body alone decides: its key, normalized profile, system order, and rule violation. */
interface BodyFacts {
  key: string
  profile: NormalizedProfile
  locale: string
  systems: readonly string[]
  violation: string | null
  /** For the analytics event of an answer given from memory (fromMemory). */
  userId: string | undefined
}

/** Bodies remembered, and the longest remembered: 2,000 bodies of at most 2 KiB is at most about 8 MiB of strings and facts. */
const MEMO_ENTRIES = 2000
export const MEMO_MAX_BODY_CHARS = 2048

/** The 429 a rate-limited generation answers with (the client's limit or the global one), Retry-After included. */
function rateLimited (err: GenerationLimitExceeded): Error {
  const error = err.scope === 'global' ? new GenerationGlobalLimitedError(err.limit, err.retryAfterSeconds) : new GenerationRateLimitedError(err.limit, err.retryAfterSeconds)
  return Object.assign(error, { retryAfterSeconds: err.retryAfterSeconds })
}

/**
 * The request path between the route and the engine: normalize, build the
 * key, refuse known-bad profiles from memory, check the domain rules, ask the
 * engine (with this client's generation permit), and record what happened.
 * No Fastify here.
 */
export class NarrativeService {
  private readonly clock: () => number
  private readonly memo = new LruMap<string, BodyFacts>(MEMO_ENTRIES)

  constructor (private readonly deps: NarrativeServiceDeps) {
    this.clock = deps.clock ?? Date.now
  }

  keyOf (request: NarrativeRequest): NarrativeJob {
    const { key, profile, locale } = this.factsOf(request)
    return { key, profile, locale }
  }

  private factsOf (request: NarrativeRequest): BodyFacts {
    const profile = normalizeProfile(request.profile as Profile)
    const locale = normalizeLocale(request.locale ?? 'en')
    const rawTotal = Object.values(request.profile.percentages).reduce((sum, v) => sum + v, 0)
    // Frozen: remembered facts are shared by every request with the same body.
    return Object.freeze({
      key: cacheKey(profile, locale, { prefix: this.deps.prefix }),
      profile: deepFreeze(profile),
      locale,
      systems: Object.freeze(systemsOf(profile)),
      violation: profileRuleViolation(profile, rawTotal),
      userId: request.userId
    })
  }

  private rememberedFactsOf (request: NarrativeRequest, bodyText: string | undefined): BodyFacts {
    if (bodyText === undefined || bodyText.length > MEMO_MAX_BODY_CHARS) return this.factsOf(request)
    let facts = this.memo.get(bodyText)
    if (facts === undefined) {
      facts = this.factsOf(request)
      this.memo.set(bodyText, facts)
    }
    return facts
  }

  /**
   * The answer to a body text seen before, when this process alone can give
   * it: the text's facts are remembered (so it was parsed and validated
   * before: prepare() remembers only bodies that reached it), they break no
   * rule, and the in-process tier holds a fresh entry. Undefined otherwise,
   * and nothing is counted or recorded: the request then takes the whole path.
   */
  fromMemory (bodyText: string): ServedNarrative | undefined {
    const facts = this.memo.get(bodyText)
    if (facts === undefined || facts.violation !== null || this.deps.negative.recall(facts.key) !== undefined) return undefined
    const resolution = this.deps.engine.localHit(facts.key)
    if (resolution === undefined) return undefined
    this.record('hit', facts, facts.userId)
    return { body: this.toBody(resolution), resolution }
  }

  async serve (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }): Promise<ServedNarrative> {
    return await this.execute(this.prepare(request, context), request.userId)
  }

  /**
   * Everything that can refuse a request before any answer starts: the key,
   * the negative cache, the domain rules (400), and the generation permit.
   */
  prepare (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }): PreparedJob {
    const facts = this.rememberedFactsOf(request, context.bodyText)
    const job: PreparedJob = { key: facts.key, profile: facts.profile, locale: facts.locale, systems: facts.systems }
    const known = this.deps.negative.recall(job.key)
    if (known !== undefined) throw new InvalidProfileError(known)
    if (facts.violation !== null) {
      this.deps.negative.remember(job.key, facts.violation)
      this.record('error', job, request.userId)
      throw new InvalidProfileError(facts.violation)
    }
    const limiter = this.deps.limiter
    // Counted by address; an IPv6 client by its /64, so rotating addresses does not multiply the budget.
    // The engine asks for a permit before each model call, retries included.
    if (limiter?.enabled === true) job.permit = async ({ storeHealthy }) => { await limiter.take(rateLimitKey(context.clientIp), storeHealthy) }
    return job
  }

  /** Asks the engine for a prepared job and records what happened. */
  async execute (job: PreparedJob, userId?: string): Promise<ServedNarrative> {
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

  private record (event: AnalyticsEvent['event'], job: PreparedJob, userId: string | undefined): void {
    this.deps.recorder?.record({
      at: this.clock(),
      event,
      key: job.key,
      systems: (job.systems ?? systemsOf(job.profile)) as string[],
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

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
