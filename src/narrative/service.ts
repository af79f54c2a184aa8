import type { SwrEngine } from '../swr/engine.ts'
import { BuildRefusedError, type Resolution } from '../swr/types.ts'
import type { NarrativeBuilds, NarrativeJob } from './adapter.ts'
import type { NarrativeValue } from './codec.ts'
import { GenerationLimitExceeded, type GenerationLimiter } from '../generation-limiter.ts'
import type { AnalyticsEvent } from '../analytics/event.ts'
import { LRUCache } from 'lru-cache'
import { rateLimitKey } from '../client-key.ts'
import { refusedKey } from '../domain/cache-key.ts'
import { canonicalRequest, type CanonicalOptions } from '../domain/canonical.ts'
import { RefusedInputError, systemsByWeight, type NormalizedProfile, type Profile } from '../domain/profile.ts'
import type { PromptVersion } from '../domain/prompt.ts'
import { PromptSelection } from './versions.ts'
import type { Rollout } from './rollout.ts'
import { GenerationGlobalLimitedError, GenerationRateLimitedError, InvalidLocaleError, InvalidProfileError, NotCachedError } from '../errors.ts'
import type { NarrativeRequest, NarrativeResponse } from '../schemas/narrative.ts'
import { isStoredRequest } from '../schemas/stored-request.ts'

/** The public statuses: a call that waited for another's build is answered as the miss it shared. */
export type NarrativeStatus = 'hit' | 'stale' | 'durable' | 'miss' | 'fallback'

/** How a narrative was found, in the route's terms. */
export interface NarrativeResolution {
  status: NarrativeStatus
  key: string
  narrative: NarrativeValue['narrative']
  engine: string
  writtenAt: number
  /** True when this call made the narrator write (a model call was paid for). */
  generated: boolean
  /** How long the narrator took (retries included), when it wrote for this call. */
  generationMs?: number
  /** The prompt version that wrote the narrative answered with. */
  promptVersion: string
}

export interface ServedNarrative {
  body: NarrativeResponse
  resolution: NarrativeResolution
}

/** Where request events go: the analytics buffer, which never blocks. */
export interface EventRecorder {
  record: (event: AnalyticsEvent) => void
}

export interface NarrativeServiceDeps {
  engine: SwrEngine<NarrativeValue>
  /** The narrative adapter: how the engine builds a narrative, and what stands in. */
  builds: NarrativeBuilds
  prefix: string
  /** The catalogue of systems (SYSTEMS) and the served locales (LOCALES), when the operator sets them. */
  canonical?: CanonicalOptions
  limiter?: GenerationLimiter
  recorder?: EventRecorder
  clock?: () => number
  /** Which prompt version writes each key (PROMPT_VERSION, PROMPT_CANARY); the newest prompt for every key by default. */
  prompts?: PromptSelection
  /** ROLLOUT=gradual: a key its version has not written yet is answered from an earlier version's entry, and written in the background. */
  rollout?: Rollout
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

/**
 * A request's Cache-Control, as the route allowed it (src/cache-control.ts):
 * who may make the model write on demand is the route's decision.
 */
export interface NarrativeCacheOptions {
  /** An entry written before this (ms) is too old for the request. */
  minWrittenAt?: number
  /**
   * The caller may have an entry too old for it written again (no-cache, or
   * max-age / max-stale with the refresh right). Without it, an existing
   * entry too old is a NotCachedError: only a key with no entry at all is
   * built, as for any request.
   */
  mayRefresh?: boolean
  /** only-if-cached: a NotCachedError rather than a model call. */
  onlyIfCached?: boolean
  /** stale-if-error: when the model fails (the template would stand in), whether the entry there was may answer instead. */
  usableOnError?: (staleAfter: number) => boolean
}

/** A job as prepare() makes it: with the profile's systems, for the analytics event. */
export interface PreparedJob extends NarrativeJob {
  systems?: readonly string[]
}

/** Why a body is refused: the field it names and the reason, as the 400 says it. */
interface Refusal { field: 'profile' | 'locale', reason: string }

/**
 * What a request body alone decides: its key, canonical profile and locale,
 * and system order; or why it is refused. Validity is decided from the
 * canonical request alone, and refusals are remembered only in this process
 * (by body text, in the bounded memo below), never in a store that other
 * instances or clients read.
 */
type BodyFacts = {
  key: string
  prompt: PromptVersion
  profile: NormalizedProfile
  locale: string
  systems: readonly string[]
  refusal: undefined
  /** For the analytics event of an answer given from memory (fromMemory). */
  userId: string | undefined
} | {
  refusal: Refusal
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
  private readonly memo = new LRUCache<string, BodyFacts>({ max: MEMO_ENTRIES })

  private readonly deps: NarrativeServiceDeps
  readonly prompts: PromptSelection

  constructor (deps: NarrativeServiceDeps) {
    this.deps = deps
    this.clock = deps.clock ?? Date.now
    this.prompts = deps.prompts ?? new PromptSelection({ prefix: deps.prefix, model: 'gpt-4o' })
  }

  /** The job a request makes, or the 400 that refuses it (thrown). */
  keyOf (request: NarrativeRequest): NarrativeJob {
    const facts = this.factsOf(request)
    if (facts.refusal !== undefined) throw refusalError(facts.refusal)
    return { key: facts.key, profile: facts.profile, locale: facts.locale, prompt: facts.prompt }
  }

  /**
   * The job for a profile and locale read back from storage (pre-warm), with
   * every check a request goes through: the schema (the stored value may
   * predate today's), SYSTEMS, LOCALES and the domain rules. The refusal's
   * reason otherwise: pre-warm never pays a model call for what a request
   * would be refused.
   */
  storedJob (profile: unknown, locale: unknown): NarrativeJob | { refused: string } {
    const request = { profile, locale }
    if (!isStoredRequest(request)) return { refused: 'the stored profile or locale does not match today\'s request schema' }
    const facts = this.factsOf(request)
    if (facts.refusal !== undefined) return { refused: facts.refusal.reason }
    return { key: facts.key, profile: facts.profile, locale: facts.locale, prompt: facts.prompt }
  }

  private factsOf (request: NarrativeRequest): BodyFacts {
    let canonical
    try {
      canonical = canonicalRequest(request.profile as Profile, request.locale ?? 'en', this.deps.canonical)
    } catch (err) {
      if (!(err instanceof RefusedInputError)) throw err
      return Object.freeze({ refusal: Object.freeze({ field: err.field, reason: err.message }), userId: request.userId })
    }
    const { profile, locale } = canonical
    const prompt = this.prompts.promptFor(profile, locale)
    // Frozen: remembered facts are shared by every request with the same body.
    return Object.freeze({
      key: this.prompts.keyFor(profile, locale, prompt),
      prompt,
      profile: deepFreeze(profile),
      locale,
      systems: Object.freeze(systemsOf(profile)),
      refusal: undefined,
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
    if (facts === undefined || facts.refusal !== undefined) return undefined
    const found = this.deps.engine.localHit(facts.key)
    if (found === undefined) return undefined
    this.record('hit', facts, facts.userId)
    const resolution = narrativeResolution(found)
    return { body: this.toBody(resolution), resolution }
  }

  async serve (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }, cache: NarrativeCacheOptions = {}): Promise<ServedNarrative> {
    return await this.execute(this.prepare(request, context), request.userId, cache)
  }

  /**
   * Everything that can refuse a request before any answer starts: the
   * canonical form and the domain rules (400), and the generation permit.
   */
  prepare (request: NarrativeRequest, context: RequestContext = { clientIp: 'unknown' }): PreparedJob {
    const facts = this.rememberedFactsOf(request, context.bodyText)
    if (facts.refusal !== undefined) {
      this.recordRefusal()
      throw refusalError(facts.refusal)
    }
    const job: PreparedJob = { key: facts.key, profile: facts.profile, locale: facts.locale, prompt: facts.prompt, systems: facts.systems }
    const limiter = this.deps.limiter
    // Counted by address; an IPv6 client by its /64, so rotating addresses does not multiply the budget.
    // The engine asks for a permit before each model call, retries included.
    if (limiter?.enabled === true) job.permit = async ({ storeHealthy }) => { await limiter.take(rateLimitKey(context.clientIp), storeHealthy) }
    return job
  }

  /** Asks the engine for a prepared job (with the request's Cache-Control, when it sent one) and records what happened. */
  async execute (job: PreparedJob, userId?: string, cache: NarrativeCacheOptions = {}): Promise<ServedNarrative> {
    let resolution: NarrativeResolution
    try {
      // A key its version has not written yet, that an earlier version has: answered from that entry, written in the background.
      const earlier = cache.minWrittenAt === undefined ? await this.deps.rollout?.earlierAnswer(job) : undefined
      if (earlier !== undefined) {
        resolution = narrativeResolution(earlier)
        this.record(resolution.status, job, userId)
        return { body: this.toBody(resolution), resolution }
      }
      resolution = narrativeResolution(await this.resolve(job, cache))
    } catch (err) {
      this.record('error', job, userId)
      if (err instanceof BuildRefusedError && err.reason instanceof GenerationLimitExceeded) throw rateLimited(err.reason)
      if (err instanceof BuildRefusedError && err.reason instanceof NotCachedError) throw err.reason
      throw err
    }
    this.record(resolution.status, job, userId)
    return { body: this.toBody(resolution), resolution }
  }

  /** The engine's answer under the request's Cache-Control. */
  private async resolve (job: PreparedJob, cache: NarrativeCacheOptions): Promise<Resolution<NarrativeValue>> {
    const spec = this.deps.builds.specFor(job)
    if (cache.onlyIfCached === true) spec.admit = async () => { throw new NotCachedError('there is no narrative for it yet, and the request said only-if-cached') }
    const { minWrittenAt } = cache
    // The entry there is now: the one a caller without the refresh right is held to, and stale-if-error's stand-in.
    const there = minWrittenAt !== undefined && (cache.mayRefresh !== true || cache.usableOnError !== undefined)
      ? await this.deps.engine.peek(job.key).catch(() => undefined)
      : undefined
    if (there !== undefined && there !== null && there.refreshedAt < (minWrittenAt ?? 0) && cache.mayRefresh !== true) {
      throw new NotCachedError('its narrative is older than the request accepts (max-age or max-stale), and asking the model again on demand needs the refresh right')
    }
    const resolution = await this.deps.engine.getOrBuild(job.key, spec, { minWrittenAt: cache.mayRefresh === true ? minWrittenAt : undefined })
    if (resolution.status === 'fallback' && there !== undefined && there !== null && cache.usableOnError?.(there.staleAfter) === true) {
      // The model failed: the entry there was, as stale-if-error allows, rather than the template.
      return { status: 'stale', key: job.key, value: there.value, writtenAt: there.refreshedAt, built: false }
    }
    return resolution
  }

  /**
   * Makes sure a job's key holds a fresh narrative (pre-warm): skipped when it
   * does, built when missing, refreshed now when stale; the template standing
   * in counts as failed.
   */
  async warm (job: NarrativeJob): Promise<'warmed' | 'skipped' | 'failed'> {
    return await this.deps.engine.warm(job.key, this.deps.builds.specFor(job))
  }

  /** What this process's builds have written so far, for streaming requests. */
  get progress (): NarrativeBuilds['progress'] {
    return this.deps.builds.progress
  }

  /**
   * A refused request, counted under one key for all of them, with no
   * profile, systems or user: identical events coalesce in the analytics
   * buffer (one row a second however many refusals, from however many
   * clients), and nothing a refused request names reaches requested_profiles
   * (pre-warm's list) or the per-user index.
   */
  private recordRefusal (): void {
    this.deps.recorder?.record({ at: this.clock(), event: 'error', key: refusedKey(this.deps.prefix), systems: [], userId: null })
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

  private toBody (r: NarrativeResolution): NarrativeResponse {
    return {
      narrative: r.narrative,
      cache: { status: r.status, key: r.key, ageSeconds: Math.max(0, Math.floor((this.clock() - r.writtenAt) / 1000)) },
      engine: r.engine,
      version: r.promptVersion
    }
  }
}

export function narrativeResolution (r: Resolution<NarrativeValue>): NarrativeResolution {
  return {
    status: r.status === 'coalesced' ? 'miss' : r.status,
    key: r.key,
    narrative: r.value.narrative,
    engine: r.value.engine,
    writtenAt: r.writtenAt,
    generated: r.built,
    generationMs: r.buildMs,
    // Entries written before prompt versions were kept were all written by v1.
    promptVersion: r.value.prompt_version ?? 'v1'
  }
}

function refusalError (refusal: Refusal): Error {
  return refusal.field === 'locale' ? new InvalidLocaleError(refusal.reason) : new InvalidProfileError(refusal.reason)
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
