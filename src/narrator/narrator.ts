import type { Narrative } from '../domain/narrative.ts'
import type { NormalizedProfile } from '../domain/profile.ts'
import type { PromptVersion } from '../domain/prompt.ts'
import { templateNarrative, TEMPLATE_ENGINE } from '../domain/template-narrator.ts'
import { narrativeText } from '../domain/narrative-text.ts'

export interface TokenUsage { promptTokens: number, completionTokens: number }

export interface Generation {
  narrative: Narrative
  /** The model that wrote it, or "template". */
  engine: string
  usage?: TokenUsage
}

/**
 * Called with each piece of narrative text as it is written (laid out as
 * src/domain/narrative-text.ts says): the pieces of one call add up to the
 * start of the narrative's text, or all of it.
 */
export type OnText = (newText: string) => void

export interface NarratorCounters {
  /** Replies cut off past the narrative's limits (NARRATIVE_LIMITS): the model's or ours. */
  repliesCut: number
}

/** One attempt at writing a narrative. Retries and deadlines belong to the caller. */
export interface Narrator {
  readonly engine: string
  /** True when this narrator calls a model, false for the template. */
  readonly isModel: boolean
  /** What went wrong with the model's replies, for the metrics; a narrator without a model has none. */
  readonly counters?: NarratorCounters
  /** `prompt`: the version of the prompt to write with (the newest when not given). */
  generate (profile: NormalizedProfile, locale: string, signal: AbortSignal, onText?: OnText, prompt?: PromptVersion): Promise<Generation>
}

/**
 * A narrator failure, with what the retry policy needs: whether another
 * attempt may help, and how long the server asked us to wait.
 */
export class NarratorError extends Error {
  override readonly name: string = 'NarratorError'
  readonly code = 'NARR_NARRATOR_FAILED'
  readonly retryable: boolean
  readonly retryAfterMs: number | undefined
  readonly status: number | undefined

  constructor (message: string, retryable: boolean, retryAfterMs?: number, status?: number) {
    super(message)
    this.retryable = retryable
    this.retryAfterMs = retryAfterMs
    this.status = status
  }
}

export class TemplateNarrator implements Narrator {
  readonly engine = TEMPLATE_ENGINE
  readonly isModel = false
  async generate (profile: NormalizedProfile, _locale?: string, _signal?: AbortSignal, onText?: OnText): Promise<Generation> {
    const narrative = templateNarrative(profile)
    onText?.(narrativeText(narrative))
    return { narrative, engine: TEMPLATE_ENGINE }
  }
}
