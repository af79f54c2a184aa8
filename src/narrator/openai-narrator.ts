import OpenAI from 'openai'
import { parseNarrative, NarrativeFormatError } from '../domain/narrative.js'
import type { NormalizedProfile } from '../domain/profile.js'
import { buildMessages } from '../domain/prompt.js'
import { NarratorError, type Generation, type Narrator, type OnText, type TokenUsage } from './narrator.js'
import { partialNarrativeText } from '../domain/narrative-text.js'

export interface OpenAINarratorOptions {
  apiKey: string
  baseURL?: string
  model: string
  /** Per-attempt ceiling; the caller's signal usually ends an attempt sooner. */
  timeoutMs: number
}

const DECIMAL = /^[0-9]+(\.[0-9]+)?$/

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
  private readonly client: OpenAI

  constructor (private readonly options: OpenAINarratorOptions) {
    this.engine = options.model
    this.client = new OpenAI({ apiKey: options.apiKey, baseURL: options.baseURL, maxRetries: 0, timeout: options.timeoutMs })
  }

  /**
   * Always streams (`stream: true`): the text so far goes to `onText` as the
   * model writes, and the whole answer is parsed and checked at the end. A
   * stream that breaks after text was shown is not retried (the retry would
   * start the text again), so it fails as not retryable.
   */
  async generate (profile: NormalizedProfile, locale: string, signal: AbortSignal, onText?: OnText): Promise<Generation> {
    let raw = ''
    let shown = ''
    let usage: TokenUsage | undefined
    try {
      const stream = await this.client.chat.completions.create({
        model: this.options.model,
        messages: buildMessages(profile, locale),
        response_format: { type: 'json_object' },
        temperature: 0.7,
        stream: true,
        stream_options: { include_usage: true }
      }, { signal, timeout: this.options.timeoutMs })
      for await (const chunk of stream) {
        if (chunk.usage != null) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens }
        const delta = chunk.choices[0]?.delta?.content
        if (typeof delta !== 'string' || delta === '') continue
        raw += delta
        if (onText !== undefined) {
          const text = partialNarrativeText(raw)
          if (text.length > shown.length && text.startsWith(shown)) {
            shown = text
            onText(text)
          }
        }
      }
      const narrative = parseNarrative(raw)
      return { narrative, engine: this.options.model, usage }
    } catch (err) {
      const error = toNarratorError(err)
      if (shown !== '' && error.retryable) throw new NarratorError(`the model stream broke midway: ${error.message}`, false, undefined, error.status)
      throw error
    }
  }
}
