import type { BuildReason, BuildSpec } from '../swr/types.ts'
import type { NormalizedProfile } from '../domain/profile.ts'
import { ENGINE_VERSION, NEWEST_PROMPT, type PromptVersion } from '../domain/prompt.ts'
import { templateNarrative, TEMPLATE_ENGINE } from '../domain/template-narrator.ts'
import { NarratorError, type Generation, type Narrator } from '../narrator/narrator.ts'
import { withRetry, type RetryPolicy } from '../narrator/retry.ts'
import type { NarrativeValue } from './codec.ts'
import { ProgressHub } from './progress-hub.ts'

/** One narrative to answer: its key, canonical profile and locale, and the caller's permit. */
export interface NarrativeJob {
  key: string
  profile: NormalizedProfile
  locale: string
  /** The prompt version that writes it (its key names it); the newest when not given. */
  prompt?: PromptVersion
  /**
   * Called just before each narrator call this request would make, retries
   * included; throwing refuses it (a rate limit): before the first call, the
   * request is refused; before a retry, the build fails and the template
   * answers. Waiting for someone else's build never calls it, nor does a
   * background refresh. `storeHealthy` is false on the path taken because the
   * store just failed, so a permit kept in the store can count elsewhere
   * without waiting on it.
   */
  permit?: (context: { storeHealthy: boolean }) => Promise<void>
}

export interface NarrativeBuildOptions {
  narrator: Narrator
  /** Retry policy of a request's generation, and of a background refresh. */
  generation: RetryPolicy
  refresh: RetryPolicy
  /** Every narrator call that produced a narrative: what it cost and why. */
  onGeneration?: (job: NarrativeJob, generation: Generation, durationMs: number, reason: BuildReason) => void
  onError?: (err: unknown) => void
}

/**
 * What the engine needs to make a narrative: the narrator with its retry
 * policy (a request's build shares its text as it is written, for streaming
 * requests), the permit before each call, and the template that stands in
 * when the narrator fails (never stored).
 */
export class NarrativeBuilds {
  /** Text written so far by this process's builds, for streaming requests. */
  readonly progress = new ProgressHub()
  private readonly options: NarrativeBuildOptions

  constructor (options: NarrativeBuildOptions) {
    this.options = options
  }

  specFor (job: NarrativeJob): BuildSpec<NarrativeValue> {
    return {
      build: async ({ reason, signal, storeHealthy }) => await this.generate(job, reason, signal, storeHealthy),
      admit: job.permit,
      fallback: () => valueOf(job, { narrative: templateNarrative(job.profile), engine: TEMPLATE_ENGINE })
    }
  }

  private async generate (job: NarrativeJob, reason: BuildReason, signal: AbortSignal, storeHealthy: boolean): Promise<NarrativeValue> {
    const { narrator, onGeneration } = this.options
    // Requests' builds share their text as it is written; refreshes answer no one live.
    const share = reason === 'request'
    if (share) this.progress.begin(job.key)
    const started = performance.now()
    let calls = 0
    let generation: Generation
    try {
      generation = await withRetry(async attemptSignal => {
        // Every call a request makes is permitted, the first before the build began (the engine's admit).
        if (calls++ > 0 && share) await permitRetry(job, storeHealthy)
        return await narrator.generate(job.profile, job.locale, attemptSignal, share ? text => this.progress.update(job.key, text) : undefined, job.prompt)
      }, share ? this.options.generation : this.options.refresh, signal)
    } finally {
      if (share) this.progress.end(job.key)
    }
    try {
      onGeneration?.(job, generation, Math.round((performance.now() - started) * 10) / 10, reason)
    } catch (err) {
      this.options.onError?.(err)
    }
    return valueOf(job, generation)
  }
}

/** A retry refused ends the attempts: a NarratorError that is not retryable. */
async function permitRetry (job: NarrativeJob, storeHealthy: boolean): Promise<void> {
  if (job.permit === undefined) return
  try {
    await job.permit({ storeHealthy })
  } catch (err) {
    throw new NarratorError(`a retry was not permitted (${err instanceof Error ? err.message : String(err)})`, false)
  }
}

function valueOf (job: NarrativeJob, generation: Pick<Generation, 'narrative' | 'engine'>): NarrativeValue {
  const prompt = job.prompt ?? NEWEST_PROMPT
  return { version: ENGINE_VERSION, engine: generation.engine, prompt_hash: prompt.hash, prompt_version: prompt.version, profile: job.profile, locale: job.locale, narrative: generation.narrative }
}
