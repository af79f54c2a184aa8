import OpenAI from 'openai'
import { NARRATIVE_LIMITS, parseNarrative, NarrativeFormatError } from '../domain/narrative.ts'
import type { NormalizedProfile } from '../domain/profile.ts'
import { buildMessages, type PromptVersion } from '../domain/prompt.ts'
import { NarratorError, type Generation, type Narrator, type NarratorCounters, type OnText, type TokenUsage } from './narrator.ts'
import { NarrativeTextStream, narrativeText } from '../domain/narrative-text.ts'

export interface OpenAINarratorOptions {
  apiKey: string
  baseURL?: string
  model: string
  /** Per-attempt ceiling; the caller's signal usually ends an attempt sooner. */
  timeoutMs: number
}

const DECIMAL = /^[0-9]+(\.[0-9]+)?$/

/**
 * How long reading a stream may hold the event loop before it lets other work
 * run. Pieces that arrived together (a burst from the network, a backlog after
 * a busy spell) are read in one turn of the loop otherwise: the SDK's stream
 * goes from piece to piece in microtasks.
 */
const READ_SLICE_MS = 10
const nextTurn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

/** Retry-After as milliseconds: `retry-after-ms`, seconds, or an HTTP date; undefined when unreadable. */
function retryAfterMs (headers: Headers | undefined): number | undefined {
  const ms = headers?.get('retry-after-ms')?.trim()
  if (ms != null && DECIMAL.test(ms)) return Number(ms)
  const value = headers?.get('retry-after')?.trim()
  if (value == null) return undefined
  if (DECIMAL.test(value)) return Number(value) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

/** Maps the SDK's errors onto what our retry policy understands. */
export function toNarratorError (err: unknown): NarratorError {
  if (err instanceof NarratorError) return err
  if (err instanceof NarrativeFormatError) return new NarratorError(err.message, true)
  if (err instanceof OpenAI.APIUserAbortError) return new NarratorError('the model call was aborted', false)
  if (err instanceof OpenAI.APIConnectionTimeoutError) return new NarratorError('the model call timed out', true)
  if (err instanceof OpenAI.APIConnectionError) return new NarratorError('the model could not be reached', true)
  if (err instanceof OpenAI.APIError) {
    const status = err.status ?? 0
    const retryable = status === 408 || status === 409 || status === 429 || status >= 500
    return new NarratorError(`the model answered ${status}`, retryable, retryAfterMs(err.headers), status)
  }
  return new NarratorError(`the model call failed: ${(err as Error)?.message ?? String(err)}`, true)
}

/**
 * The official SDK with its own retries off (maxRetries: 0) and an explicit
 * timeout: the SDK's defaults would retry twice over ten minutes. Our retry
 * policy (src/narrator/retry.ts) owns attempts, backoff and the deadline.
 */
export class OpenAINarrator implements Narrator {
  readonly isModel = true
  readonly engine: string
  readonly counters: NarratorCounters = { repliesCut: 0 }
  private readonly client: OpenAI

  private readonly options: OpenAINarratorOptions

  constructor (options: OpenAINarratorOptions) {
    this.options = options
    this.engine = options.model
    this.client = new OpenAI({ apiKey: options.apiKey, baseURL: options.baseURL, maxRetries: 0, timeout: options.timeoutMs })
  }

  /**
   * Always streams (`stream: true`): the new text goes to `onText` as the
   * model writes, and the whole answer is parsed and checked at the end. A
   * stream that breaks after text was shown is not retried (the retry would
   * start the text again), so it fails as not retryable.
   *
   * A reply is bounded by NARRATIVE_LIMITS: the model is asked for at most
   * `replyTokens` (max_tokens), and a reply that passes a limit anyway is cut
   * off there (the request is aborted, nothing more is read or paid for) and
   * fails as not retryable, counted in `counters.repliesCut`: asking again
   * would most likely pay for another one as long.
   */
  async generate (profile: NormalizedProfile, locale: string, signal: AbortSignal, onText?: OnText, prompt?: PromptVersion): Promise<Generation> {
    // Concatenated as it comes (V8 joins the pieces once, at the parse).
    let raw = ''
    let shown = ''
    let cutByModel = false
    let usage: TokenUsage | undefined
    const reader = new NarrativeTextStream()
    try {
      const stream = await this.client.chat.completions.create({
        model: this.options.model,
        messages: buildMessages(profile, locale, prompt),
        response_format: { type: 'json_object' },
        temperature: 0.7,
        max_tokens: NARRATIVE_LIMITS.replyTokens,
        stream: true,
        stream_options: { include_usage: true }
      }, { signal, timeout: this.options.timeoutMs })
      let sliceStarted = performance.now()
      for await (const chunk of stream) {
        if (performance.now() - sliceStarted > READ_SLICE_MS) {
          await nextTurn()
          sliceStarted = performance.now()
        }
        if (chunk.usage != null) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens }
        const choice = chunk.choices[0]
        if (choice?.finish_reason === 'length') cutByModel = true
        const delta = choice?.delta?.content
        if (typeof delta !== 'string' || delta === '') continue
        raw += delta
        const text = reader.push(delta)
        // Thrown inside the loop: the SDK aborts the request as the loop ends early.
        if (reader.overLimit !== undefined) throw this.cut(`it passed the narrative's limits (${reader.overLimit})`)
        if (text !== '') {
          shown += text
          onText?.(text)
        }
      }
      if (cutByModel) throw this.cut(`the model stopped at max_tokens (${NARRATIVE_LIMITS.replyTokens})`)
      const narrative = parseNarrative(raw)
      // The text shown must be where the stored text starts: the deltas add up to it.
      if (!narrativeText(narrative).startsWith(shown)) throw new NarratorError('the model\'s reply does not match the text it streamed', false)
      return { narrative, engine: this.options.model, usage }
    } catch (err) {
      const error = toNarratorError(err)
      if (shown !== '' && error.retryable) throw new NarratorError(`the model stream broke midway: ${error.message}`, false, undefined, error.status)
      throw error
    }
  }

  private cut (why: string): NarratorError {
    this.counters.repliesCut++
    return new NarratorError(`the model's reply was cut off: ${why}`, false)
  }
}
