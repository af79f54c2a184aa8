import fp from 'fastify-plugin'
import { SwrEngine } from '../src/swr/engine.ts'
import { LocalTier } from '../src/swr/local-tier.ts'
import { DurableTier } from '../src/swr/durable-tier.ts'
import { BuildClaims } from '../src/swr/build-claims.ts'
import { BuildClaimsRepository } from '../src/db/build-claims-repository.ts'
import { ChatEntriesRepository } from '../src/db/chat-entries-repository.ts'
import { durableChat } from '../src/chat/durable-chat.ts'
import { ChatCompletions } from '../src/chat/completions.ts'
import { chatCodec, type ChatValue } from '../src/chat/codec.ts'
import { StreamRelay } from '../src/stream-relay.ts'
import { ApiKeysRepository, monthOf, type ApiKey } from '../src/db/api-keys-repository.ts'
import { SavingsLedger } from '../src/chat/savings-ledger.ts'

declare module 'fastify' {
  interface FastifyInstance {
    chat: {
      completions: ChatCompletions
      engine: SwrEngine<ChatValue>
      apiKeys: ApiKeysRepository
      /** The live key of a secret (remembered for 30 s), or null. */
      keyOf: (secret: string) => Promise<ApiKey | null>
      /** The key of a secret keyOf looked up in the last 30 s (null: not a live key), or undefined: not known here now. Never waits. */
      knownKey: (secret: string) => ApiKey | null | undefined
      /** Forgets what keyOf remembers (a key was revoked). */
      forgetKeys: () => void
      /** What the key's upstream calls cost this month (remembered for 5 s, and counted here as they land). */
      spentThisMonth: (key: ApiKey) => Promise<number>
      /** An answer from the cache saved the key what its entry cost (summed here, written every 5 s). */
      noteSaving: (keyId: string, usd: number) => void
      /** Writes the savings summed so far (tests, tools; it runs every 5 s anyway). */
      flushSavings: () => Promise<void>
    }
  }
}

/** How long a looked-up key is trusted: a revoked key stops working within this on every instance. */
const KEY_MEMORY_MS = 30_000
const OPENAI_URL = 'https://api.openai.com/v1'
/**
 * Chunks a relayed stream keeps (Redis trims beyond, approximately): a
 * completion longer than this is joined live on other instances only by
 * requests that came before it was trimmed; the others get the stored entry.
 */
const RELAY_MAX_CHUNKS = 10_000
/** What the in-process tier of chat entries holds at most. */
const LOCAL_CHAT_BYTES = 64 * 1024 * 1024

/** A chat entry's size in memory, near enough: its chunks' characters. */
function chatBytes (value: ChatValue): number {
  let n = 0
  for (const chunk of value.chunks) n += chunk.length
  return n
}

/**
 * The OpenAI-compatible caching endpoint's parts: an engine of its own (same
 * store, locks and breaker as the narratives', its own announcement channel),
 * the completions adapter with the upstream (OPENAI_BASE_URL, or OpenAI's
 * when only OPENAI_API_KEY is set), and the API keys in the database.
 */
export default fp(async (fastify) => {
  const { config, store, breaker, databaseBreaker, locks, metrics, db } = fastify
  const upstreamURL = config.openai.baseURL ?? (config.openai.apiKey !== undefined ? OPENAI_URL : undefined)
  const deadlineMs = config.openai.timeoutMs
  // As for narratives: a completion paid for is kept in the database, and a
  // build claim there stops a second call when Redis lost its lock.
  const durable = new DurableTier(durableChat(new ChatEntriesRepository(db.database)), databaseBreaker, fastify.log, { readTimeoutMs: deadlineMs, available: db.isOpen })
  const claims = new BuildClaims(new BuildClaimsRepository(db.database, 'chat_entries'), durable, fastify.log, {
    ttlMs: deadlineMs + 5000,
    pollMinMs: 50,
    pollMaxMs: 1000,
    // Chat rows carry no engine version: the claim's look at chat_entries ignores it.
    entryVersion: 'chat'
  })
  // As for narratives, an in-process first tier in front of Redis: a hit costs no round trip.
  // Completions vary in size (up to 1 MiB), so it is bounded by bytes too.
  const local = store.kind === 'memory' || config.localCache.maxEntries === 0
    ? undefined
    : new LocalTier<ChatValue>({ maxEntries: config.localCache.maxEntries, ttlMs: config.localCache.ttlMs, maxBytes: LOCAL_CHAT_BYTES, sizeOf: entry => chatBytes(entry.value as ChatValue) })
  const engine = new SwrEngine<ChatValue>({
    store,
    breaker,
    locks,
    local,
    durable,
    claims,
    codec: chatCodec,
    logger: fastify.log,
    events: { stored: bytes => metrics.valueSize.observe(bytes) },
    options: {
      prefix: `${config.cachePrefix}:chat`,
      ttlSeconds: config.ttlSeconds,
      staleSeconds: config.staleSeconds,
      buildDeadlineMs: config.openai.timeoutMs,
      refreshDeadlineMs: config.openai.timeoutMs,
      maxWaitMs: config.openai.timeoutMs + 2000,
      pollMinMs: 50,
      pollMaxMs: 1000
    }
  })
  await engine.start()
  // Another instance's stream being written is joined live through Redis, when there is one.
  const relay = store.kind === 'memory' || !fastify.hasDecorator('redis')
    ? undefined
    : new StreamRelay({
      redis: fastify.redis as unknown as ConstructorParameters<typeof StreamRelay>[0]['redis'],
      breaker,
      maxLength: RELAY_MAX_CHUNKS,
      ttlMs: deadlineMs + 5000,
      onError: (err, what) => fastify.log.warn({ err: { message: err.message } }, `${what} failed`)
    })
  const completions = new ChatCompletions({
    relay,
    engine,
    prefix: config.cachePrefix,
    upstream: upstreamURL === undefined ? undefined : { baseURL: upstreamURL, apiKey: config.openai.apiKey, timeoutMs: config.openai.timeoutMs },
    onCompletion: (model, usage, payer) => {
      metrics.modelCalls.inc({ engine: model, reason: 'chat' })
      const prompt = usage?.prompt_tokens ?? 0
      const completion = usage?.completion_tokens ?? 0
      metrics.tokens.inc({ model, kind: 'prompt' }, prompt)
      metrics.tokens.inc({ model, kind: 'completion' }, completion)
      const price = config.modelPrices[model] ?? config.modelPrices['gpt-4o']
      const usd = (prompt * price.input + completion * price.output) / 1_000_000
      metrics.cost.inc({ model }, usd)
      if (payer === undefined || usd === 0) return usd
      const month = monthOf(Date.now())
      const known = spent.get(payer)
      if (known !== undefined && known.month === month) known.usd += usd
      apiKeys.addSpend(payer, month, usd).catch(err => fastify.log.warn({ err: (err as Error).message, key: payer }, 'API key spend not recorded'))
      return usd
    }
  })
  const apiKeys = new ApiKeysRepository(fastify.db.database)
  const spent = new Map<string, { month: string, usd: number, until: number }>()
  async function spentThisMonth (key: ApiKey): Promise<number> {
    const month = monthOf(Date.now())
    const known = spent.get(key.id)
    if (known !== undefined && known.month === month && known.until > Date.now()) return known.usd
    const usd = await apiKeys.spent(key.id, month)
    if (spent.size > 10_000) spent.clear()
    spent.set(key.id, { month, usd, until: Date.now() + 5000 })
    return usd
  }
  // Keys checked in the last KEY_MEMORY_MS, by the secret as sent: hashing it
  // (SHA-256, as the database keeps it) on every hit was a twentieth of a
  // chat hit's CPU. The secrets stay in this process's memory, where each
  // request's headers already put them; they are never logged or written.
  const remembered = new Map<string, { key: ApiKey | null, until: number }>()
  async function keyOf (secret: string): Promise<ApiKey | null> {
    const known = remembered.get(secret)
    if (known !== undefined && known.until > Date.now()) return known.key
    const key = await apiKeys.bySecret(secret)
    if (remembered.size > 10_000) remembered.clear()
    remembered.set(secret, { key, until: Date.now() + KEY_MEMORY_MS })
    return key
  }
  function knownKey (secret: string): ApiKey | null | undefined {
    const known = remembered.get(secret)
    return known !== undefined && known.until > Date.now() ? known.key : undefined
  }
  // Savings are summed in memory and written every 5 s: a hit costs no database write.
  const savings = new SavingsLedger()
  function noteSaving (keyId: string, usd: number): void {
    metrics.saving.inc(usd)
    savings.note(keyId, usd)
  }
  async function flushSavings (): Promise<void> {
    await Promise.all(savings.take().map(async ({ keyId, month, usd }) => {
      await apiKeys.addSaved(keyId, month, usd).catch(err => fastify.log.warn({ err: (err as Error).message, key: keyId }, 'API key savings not recorded'))
    }))
  }
  const flusher = setInterval(() => { flushSavings().catch(() => {}) }, 5000)
  flusher.unref()
  fastify.decorate('chat', { completions, engine, apiKeys, keyOf, knownKey, forgetKeys: () => remembered.clear(), spentThisMonth, noteSaving, flushSavings })
  fastify.addHook('onClose', async () => {
    clearInterval(flusher)
    await engine.close()
    await relay?.close()
    await flushSavings()
  })
}, { name: 'chat', dependencies: ['config', 'redis', 'breaker', 'locks', 'db', 'metrics'] })
