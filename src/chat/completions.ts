import type { SwrEngine } from '../swr/engine.ts'
import type { BuildSpec, Resolution } from '../swr/types.ts'
import { canonicalChat, chatKey, type CanonicalChat } from './canonical.ts'
import type { ChatValue } from './codec.ts'
import { LiveChunks } from './live-chunks.ts'
import { streamCompletion, type UpstreamOptions } from './upstream.ts'
import { usageOf } from './chunks.ts'

export interface ChatRequestFacts extends CanonicalChat {
  key: string
}

export interface CompletionsOptions {
  engine: SwrEngine<ChatValue>
  /** Undefined when no upstream is configured: every request that needs one is refused. */
  upstream: UpstreamOptions | undefined
  prefix: string
  /** Each completion the upstream wrote: its model and usage, for metrics, and who caused it (an API key's id); answers what it cost in USD. */
  onCompletion?: (model: string, usage: { prompt_tokens?: number, completion_tokens?: number } | undefined, payer: string | undefined) => number
}

/**
 * The chat completions adapter of the engine: a request's key is a hash of
 * its canonical form within its tenant's scope, a build is one streamed
 * upstream call whose chunks are shared live with the requests that join it,
 * and there is no stand-in: a failed call is passed to the caller, never stored.
 */
export class ChatCompletions {
  readonly live = new LiveChunks()
  private readonly options: CompletionsOptions

  constructor (options: CompletionsOptions) {
    this.options = options
  }

  get hasUpstream (): boolean {
    return this.options.upstream !== undefined
  }

  factsOf (body: Record<string, unknown>, scope: string): ChatRequestFacts {
    const canonical = canonicalChat(body)
    return { ...canonical, key: chatKey(this.options.prefix, scope, canonical.canonical) }
  }

  /** The upstream; throws when there is none (callers check hasUpstream first). */
  upstreamOptions (): UpstreamOptions {
    if (this.options.upstream === undefined) throw new Error('no upstream is configured')
    return this.options.upstream
  }

  /** True while this process is building the key. */
  building (key: string): boolean {
    return this.live.building(key)
  }

  /** The completion for a request; `payer` is charged for the upstream call when this request causes one. */
  async complete (facts: ChatRequestFacts, minWrittenAt: number | undefined, admit: BuildSpec<ChatValue>['admit'], payer?: string): Promise<Resolution<ChatValue>> {
    return await this.options.engine.getOrBuild(facts.key, this.specFor(facts, admit, payer), { minWrittenAt })
  }

  private specFor (facts: ChatRequestFacts, admit: BuildSpec<ChatValue>['admit'], payer: string | undefined): BuildSpec<ChatValue> {
    const upstream = this.options.upstream
    return {
      admit,
      build: async ({ signal }) => {
        if (upstream === undefined) throw new Error('no upstream is configured')
        this.live.begin(facts.key)
        try {
          const offsets: number[] = []
          let first: number | undefined
          const chunks = await streamCompletion(upstream, facts.canonical, signal, data => {
            const now = Date.now()
            first ??= now
            offsets.push(now - first)
            this.live.push(facts.key, data)
          })
          const usd = this.options.onCompletion?.(String(facts.canonical.model), usageOf(chunks), payer)
          return { chunks, offsets, usd }
        } finally {
          this.live.end(facts.key)
        }
      }
    }
  }
}
