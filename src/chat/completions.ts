import type { SwrEngine } from '../swr/engine.ts'
import type { BuildSpec, Resolution } from '../swr/types.ts'
import { canonicalChat, chatKey, type CanonicalChat } from './canonical.ts'
import type { ChatValue } from './codec.ts'
import { LiveChunks } from './live-chunks.ts'
import { streamCompletion, type UpstreamOptions } from './upstream.ts'
import { usageOf } from './chunks.ts'
import type { StreamRelay } from '../stream-relay.ts'

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
  /** Relays each build's chunks to the other instances (Redis); without it, only this process's builds are joined live. */
  relay?: StreamRelay
}

/** The relay's stream for a key: beside the value's namespace, as locks are, so pattern deletes of entries never see it. */
export function relayKey (key: string): string {
  return `relay:${key}`
}

/**
 * The chat completions adapter of the engine: a request's key is a hash of
 * its canonical form within its tenant's scope, a build is one streamed
 * upstream call whose chunks are shared live with the requests that join it
 * (on this instance, and through the relay on the others), and there is no stand-in: a failed call is passed to the caller, never stored.
 */
export class ChatCompletions {
  readonly live = new LiveChunks()
  private readonly options: CompletionsOptions
  /** Another instance's builds followed here, by key: how many waiting calls want each, and how to stop it. */
  private readonly following = new Map<string, { wanted: number, stop: () => void }>()

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

  /** True while another instance's build of the key is relayed here. */
  relayed (key: string): boolean {
    return this.live.relayed(key)
  }

  /** The completion for a request; `payer` is charged for the upstream call when this request causes one. */
  async complete (facts: ChatRequestFacts, minWrittenAt: number | undefined, admit: BuildSpec<ChatValue>['admit'], payer?: string): Promise<Resolution<ChatValue>> {
    let unfollow: (() => void) | undefined
    const spec = this.specFor(facts, admit, payer)
    // Waiting for another instance's build: follow its chunks live until this call has its answer.
    spec.onWait = () => { unfollow ??= this.follow(facts.key) }
    try {
      return await this.options.engine.getOrBuild(facts.key, spec, { minWrittenAt })
    } finally {
      unfollow?.()
    }
  }

  /**
   * Feeds another instance's build of the key into `live`, once for every
   * call of this process that waits for it; returns the function that says
   * this call no longer needs it. Nothing when this process builds it, or
   * the relay cannot follow (no Redis, unhealthy, too many followed).
   */
  private follow (key: string): () => void {
    const relay = this.options.relay
    if (relay === undefined || this.live.building(key)) return () => {}
    let followed = this.following.get(key)
    if (followed === undefined) {
      const feed = this.live.begin(key, true)
      const stop = relay.follow(relayKey(key), data => feed.push(data), () => {
        feed.end()
        if (this.following.get(key) === followed) this.following.delete(key)
      })
      if (stop === undefined) {
        feed.end()
        return () => {}
      }
      followed = { wanted: 0, stop }
      this.following.set(key, followed)
    }
    const mine = followed
    mine.wanted++
    let released = false
    return () => {
      if (released) return
      released = true
      if (--mine.wanted === 0) mine.stop()
    }
  }

  private specFor (facts: ChatRequestFacts, admit: BuildSpec<ChatValue>['admit'], payer: string | undefined): BuildSpec<ChatValue> {
    const upstream = this.options.upstream
    return {
      admit,
      build: async ({ signal, reason }) => {
        if (upstream === undefined) throw new Error('no upstream is configured')
        // Only a request's build is joined live: a background refresh answers no one while it
        // runs (requests get the entry there is), and its chunks must not reach a stream
        // that is replaying that older entry.
        const live = reason === 'request'
        // This process builds it after all (another's build died, say): a relayed feed gives way.
        if (live) this.following.get(facts.key)?.stop()
        const feed = live ? this.live.begin(facts.key) : { push: () => {}, end: () => {} }
        const relayed = live ? this.options.relay?.writer(relayKey(facts.key)) : undefined
        let outcome: 'done' | 'failed' = 'failed'
        try {
          const offsets: number[] = []
          let first: number | undefined
          const chunks = await streamCompletion(upstream, facts.canonical, signal, data => {
            const now = Date.now()
            first ??= now
            offsets.push(now - first)
            feed.push(data)
            relayed?.push(data)
          })
          outcome = 'done'
          const usd = this.options.onCompletion?.(String(facts.canonical.model), usageOf(chunks), payer)
          return { chunks, offsets, usd }
        } finally {
          relayed?.end(outcome)
          feed.end()
        }
      }
    }
  }
}
