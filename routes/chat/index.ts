import { PassThrough } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { assembleCompletion, isUsageChunk, sseEvent, SSE_DONE } from '../../src/chat/chunks.ts'
import { CacheControlError, oldestAccepted, parseCacheControl, usableOnError } from '../../src/cache-control.ts'
import { streamCompletion, UpstreamError } from '../../src/chat/upstream.ts'
import type { ChatRequestFacts } from '../../src/chat/completions.ts'
import type { ChatValue } from '../../src/chat/codec.ts'
import type { ApiKey } from '../../src/db/api-keys-repository.ts'
import { GenerationLimitExceeded } from '../../src/generation-limiter.ts'
import { BuildFailedError, BuildRefusedError, type Resolution } from '../../src/swr/types.ts'
import { OpenAIError, sendOpenAIError } from './openai-error.ts'
import { openAIErrorResponses } from '../../src/schemas/error.ts'
import { ChatBodyMemo, chatMemoryHitHook, completionJson, scopeOf } from './memory-hit.ts'
import { ChatBodyError, pathOf } from '../../src/chat/canonical.ts'
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'
import { ownError } from '../../src/body-errors.ts'
import { instancePathParts } from '../../src/schemas/validation-message.ts'

const ChatBodySchema = Type.Object({
  model: Type.String({ minLength: 1 }),
  messages: Type.Array(Type.Object({ role: Type.String({ minLength: 1 }) }, { additionalProperties: true }), { minItems: 1 }),
  stream: Type.Optional(Type.Boolean())
}, { additionalProperties: true, description: 'An OpenAI chat completions request: every field is forwarded to the upstream' })

const errors = openAIErrorResponses({
  400: 'The request is invalid (the message names what), or the upstream refused it (passed through, never cached)',
  401: 'No API key, or not a live one',
  429: 'This key caused too many upstream calls this minute, or the upstream rate-limited (Retry-After)',
  500: 'An unexpected error; the request id is in the server\'s logs',
  502: 'The upstream could not be reached, its stream broke, or the identical request this one waited for failed',
  503: 'No upstream is configured, or API keys cannot be checked',
  504: 'only-if-cached, and there is no entry'
})
const security = [{ apiKey: [] }]
/** A conversation is larger than a profile: 1 MiB here, against the server's 16 KiB elsewhere. */
export const CHAT_BODY_LIMIT = 1024 * 1024

class OnlyIfCached extends Error {}

class BudgetSpent extends Error {
  readonly budget: number
  constructor (budget: number) {
    super('budget spent')
    this.budget = budget
  }
}

/** The caller's API key (Authorization: Bearer nck_…); never forwarded upstream. */
async function apiKeyOf (fastify: FastifyInstance, request: FastifyRequest): Promise<ApiKey> {
  const match = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '')
  if (match === null) throw new OpenAIError(401, 'an API key is required: Authorization: Bearer <key> (admins issue keys with POST /api/keys)', 'invalid_request_error', 'missing_api_key')
  const key = await fastify.chat.keyOf(match[1]).catch(() => { throw new OpenAIError(503, 'API keys cannot be checked: the database is unavailable', 'server_error', 'keys_unavailable', '5') })
  if (key === null) throw new OpenAIError(401, 'the API key is not valid (unknown or revoked)', 'invalid_request_error', 'invalid_api_key')
  return key
}

/** An engine or upstream failure, as OpenAI's error shape. */
function asOpenAIError (err: unknown): OpenAIError | undefined {
  if (err instanceof OpenAIError) return err
  const cause = err instanceof BuildFailedError ? err.cause : err instanceof BuildRefusedError ? err.reason : err
  if (cause instanceof OnlyIfCached) return new OpenAIError(504, 'not cached, and the request said only-if-cached', 'invalid_request_error', 'not_cached')
  if (cause instanceof BudgetSpent) return new OpenAIError(429, `this API key has spent its monthly budget of $${cause.budget}; cached answers are still served`, 'insufficient_quota', 'budget_exceeded')
  if (cause instanceof GenerationLimitExceeded) return new OpenAIError(429, `this API key caused more than ${cause.limit} model calls this minute (cached answers are never limited)`, 'rate_limit_error', 'rate_limit_exceeded', String(cause.retryAfterSeconds))
  if (cause instanceof UpstreamError) {
    let body: { error?: { message?: string, type?: string, code?: string } } = {}
    try { body = JSON.parse(cause.body) } catch {}
    return new OpenAIError(cause.status, body.error?.message ?? `the upstream answered ${cause.status}`, body.error?.type ?? 'upstream_error', body.error?.code ?? `upstream_${cause.status}`, cause.retryAfter)
  }
  if (cause instanceof Error && cause.message === 'no upstream is configured') return noUpstream()
  if (err instanceof BuildFailedError) return new OpenAIError(502, 'the identical request this one waited for failed upstream; try again', 'upstream_error', 'upstream_failed')
  return undefined
}

/** The parameter a schema error is about, in OpenAI's style: its path, and the property required or unknown. */
function paramOf (error: FastifySchemaValidationError): string {
  const trail: Array<string | number> = instancePathParts(error.instancePath).map(part => /^(0|[1-9][0-9]*)$/.test(part) ? Number(part) : part)
  const params = error.params as { missingProperty?: unknown, additionalProperty?: unknown }
  const named = error.keyword === 'required' ? params.missingProperty : error.keyword === 'additionalProperties' ? params.additionalProperty : undefined
  if (typeof named === 'string') trail.push(named)
  return pathOf(trail)
}

function noUpstream (): OpenAIError {
  return new OpenAIError(503, 'no upstream is configured: set OPENAI_BASE_URL (an OpenAI-compatible server) or OPENAI_API_KEY', 'server_error', 'no_upstream')
}

function cacheHeaders (reply: FastifyReply, resolution: Resolution<ChatValue> | undefined, key: string): void {
  reply.header('X-Cache-Key', key)
  if (resolution === undefined) {
    reply.header('X-Cache', 'BYPASS')
    return
  }
  reply.header('X-Cache', resolution.status.toUpperCase())
  reply.header('Age', String(Math.max(0, Math.floor((Date.now() - resolution.writtenAt) / 1000))))
}

/**
 * POST /v1/chat/completions (JSON and `stream: true`), GET /v1/models and
 * POST /v1/cache/explain: the OpenAI API in front of the engine. Every error
 * here is in OpenAI's shape.
 */
const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.setErrorHandler((fastifyError: FastifyError, request, reply) => {
    // Fastify's body errors said as the app says them (the limit, what is taken, where the JSON is wrong).
    const error = ownError(fastifyError, request)
    const known = asOpenAIError(error)
    if (known !== undefined) return sendOpenAIError(reply, known)
    if (error instanceof CacheControlError) return sendOpenAIError(reply, new OpenAIError(400, error.message, 'invalid_request_error', 'invalid_cache_control'))
    if (error instanceof ChatBodyError) return sendOpenAIError(reply, new OpenAIError(400, error.message, 'invalid_request_error', error.code, undefined, error.param))
    if (error.validation !== undefined) {
      // A body that fails the schema: the parameter named as OpenAI names it (messages[0].role).
      const first = (error.validation as FastifySchemaValidationError[]).find(e => e.keyword !== 'if' && e.keyword !== 'propertyNames')
      const code = first?.keyword === 'required' ? 'missing_required_parameter' : 'invalid_value'
      return sendOpenAIError(reply, new OpenAIError(400, error.message, 'invalid_request_error', code, undefined, first === undefined ? undefined : paramOf(first)))
    }
    if (error.statusCode !== undefined && error.statusCode < 500) {
      // The app's own codes in OpenAI's style: NARR_BODY_TOO_LARGE is body_too_large.
      const code = error.code?.startsWith('NARR_') === true ? error.code.slice(5).toLowerCase() : error.code ?? 'invalid_request'
      return sendOpenAIError(reply, new OpenAIError(error.statusCode, error.message, 'invalid_request_error', code))
    }
    request.log.error({ err: { message: error.message, stack: error.stack } }, 'chat request failed')
    return sendOpenAIError(reply, new OpenAIError(500, 'internal error; the request id is in the logs', 'server_error', 'internal_error'))
  })

  // A JSON body seen before whose completion this process holds is answered by the
  // route's preParsing hook, before parsing and validation (memory-hit.ts).
  const memo = new ChatBodyMemo()
  fastify.post('/v1/chat/completions', {
    bodyLimit: CHAT_BODY_LIMIT,
    preParsing: chatMemoryHitHook(fastify, memo),
    schema: {
      tags: ['chat'],
      operationId: 'createChatCompletion',
      security,
      summary: 'OpenAI chat completions, cached: one upstream call per distinct request across every instance',
      description: 'The OpenAI wire format, JSON or `stream: true` (Server-Sent Events ending in `data: [DONE]`). The key is a hash of the canonical request within the API key\'s tenant (`POST /v1/cache/explain` shows it). `Cache-Control` in the request: `no-cache` (ask again and replace), `no-store` (bypass), `max-age=N`, `max-stale=N`, `stale-if-error=N` (an older entry when the upstream fails or rate-limits), `only-if-cached` (504 when there is none). Answers carry `X-Cache`, `Age` and `X-Cache-Key`.',
      body: ChatBodySchema,
      response: { 200: { description: 'A chat.completion (or, with stream: true, its chunks as Server-Sent Events)', type: 'object', additionalProperties: true }, ...errors }
    }
  }, async (request, reply) => {
    const apiKey = await apiKeyOf(fastify, request)
    const control = parseCacheControl(request.headers['cache-control'])
    const body = request.body as Record<string, unknown>
    const { completions } = fastify.chat
    const scope = scopeOf(apiKey)
    const facts = completions.factsOf(body, scope)
    if (body.stream !== true) memo.remember(scope, request.jsonBodyText, facts.key)
    const includeUsage = (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true
    if (body.stream === true) return await streamAnswer(fastify, request, reply, facts, control, apiKey, includeUsage)
    let resolution: Resolution<ChatValue> | undefined
    let json: string
    if (control.noStore) {
      if (!completions.hasUpstream) throw noUpstream()
      json = JSON.stringify(assembleCompletion(await streamCompletion(fastify.chat.completions.upstreamOptions(), facts.canonical, AbortSignal.timeout(fastify.config.openai.timeoutMs), () => {})))
    } else {
      resolution = await complete(fastify, facts, control, apiKey)
      json = completionJson(resolution.value)
    }
    cacheHeaders(reply, resolution, facts.key)
    // Already JSON: sent as it is, not serialized again.
    return await reply.type('application/json; charset=utf-8').send(json)
  })

  fastify.post('/v1/cache/explain', {
    bodyLimit: CHAT_BODY_LIMIT,
    schema: {
      tags: ['chat'],
      operationId: 'explainChatCache',
      security,
      summary: 'How a chat completions request is keyed, and whether it is cached',
      body: ChatBodySchema,
      response: {
        200: Type.Object({ key: Type.String(), canonical: Type.Object({}, { additionalProperties: true }), dropped: Type.Array(Type.String()), cached: Type.Boolean(), writtenAt: Type.Optional(Type.String({ format: 'date-time' })) }, { description: 'The canonical form, the key, the fields left out of it, and the entry if any' }),
        ...errors
      }
    }
  }, async (request) => {
    const apiKey = await apiKeyOf(fastify, request)
    const facts = fastify.chat.completions.factsOf(request.body as Record<string, unknown>, scopeOf(apiKey))
    const entry = await fastify.chat.engine.peek(facts.key)
    return { key: facts.key, canonical: facts.canonical, dropped: facts.dropped, cached: entry !== null && entry !== undefined, ...(entry ? { writtenAt: new Date(entry.refreshedAt).toISOString() } : {}) }
  })

  let models: { at: number, status: number, body: string } | undefined
  fastify.get('/v1/models', {
    schema: { tags: ['chat'], operationId: 'listModels', security, summary: 'The upstream\'s models, passed through (cached for 60 s)', response: { 200: { description: 'The upstream\'s answer', type: 'object', additionalProperties: true }, ...errors } }
  }, async (request, reply) => {
    await apiKeyOf(fastify, request)
    const upstream = fastify.chat.completions.upstreamOptions()
    if (models === undefined || Date.now() - models.at > 60_000) {
      const headers: Record<string, string> = {}
      if (upstream.apiKey !== undefined) headers.authorization = `Bearer ${upstream.apiKey}`
      const response = await fetch(`${upstream.baseURL.replace(/\/+$/, '')}/models`, { headers, signal: AbortSignal.timeout(10_000) })
        .catch(err => { throw new OpenAIError(502, `the upstream could not be reached: ${(err as Error).message}`, 'upstream_error', 'upstream_unreachable') })
      models = { at: Date.now(), status: response.status, body: await response.text() }
    }
    return await reply.code(models.status as 200).type('application/json').send(models.body)
  })
}

/** Through the engine, with the request's Cache-Control and the key's model-call limit as the admission. */
async function complete (fastify: FastifyInstance, facts: ChatRequestFacts, control: ReturnType<typeof parseCacheControl>, apiKey: ApiKey): Promise<Resolution<ChatValue>> {
  const minWrittenAt = oldestAccepted(control, Date.now(), fastify.config.staleSeconds * 1000)
  // stale-if-error: what is there now, in case the upstream fails.
  const standby = control.staleIfError !== undefined && minWrittenAt !== undefined ? await fastify.chat.engine.peek(facts.key).catch(() => undefined) : undefined
  const admit = async ({ storeHealthy }: { storeHealthy: boolean }): Promise<void> => {
    if (control.onlyIfCached) throw new OnlyIfCached()
    if (!fastify.chat.completions.hasUpstream) throw new Error('no upstream is configured')
    if (apiKey.monthlyBudgetUsd !== null && await fastify.chat.spentThisMonth(apiKey) >= apiKey.monthlyBudgetUsd) throw new BudgetSpent(apiKey.monthlyBudgetUsd)
    await fastify.limiter.take(`api-key:${apiKey.id}`, storeHealthy, apiKey.rateLimit)
  }
  try {
    const resolution = await fastify.chat.completions.complete(facts, minWrittenAt, admit, apiKey.id)
    // Answered without calling the upstream: it saved what the entry's call cost.
    if (!resolution.built && resolution.value.usd !== undefined) fastify.chat.noteSaving(apiKey.id, resolution.value.usd)
    return resolution
  } catch (err) {
    const failure = asOpenAIError(err)
    const usable = standby !== undefined && standby !== null &&
      failure !== undefined && (failure.statusCode === 429 || failure.statusCode >= 500) &&
      usableOnError(control, standby.staleAfter, Date.now())
    if (!usable) throw err
    // The upstream failed or rate-limited: the older entry, as the request allowed.
    return { status: 'stale', key: facts.key, value: standby.value, writtenAt: standby.refreshedAt, built: false }
  }
}

/** True when `sent` is where `chunks` starts: what a request got live is the stored completion's beginning. */
function startsWith (chunks: string[], sent: string[]): boolean {
  return sent.length <= chunks.length && sent.every((data, i) => chunks[i] === data)
}

/** `stream: true`: a build under way (here, or relayed from another instance) is joined live; anything else is replayed from the entry. */
async function streamAnswer (fastify: FastifyInstance, request: FastifyRequest, reply: FastifyReply, facts: ChatRequestFacts, control: ReturnType<typeof parseCacheControl>, apiKey: ApiKey, includeUsage: boolean): Promise<FastifyReply> {
  let stream: PassThrough | undefined
  const sent: string[] = []
  const pace = /^original$/i.test(String(request.headers['x-replay-pace'] ?? ''))
  const joining = fastify.chat.completions.building(facts.key)
  const start = (xCache: string): void => {
    if (stream !== undefined) return
    stream = new PassThrough()
    reply.header('Content-Type', 'text/event-stream; charset=utf-8').header('Cache-Control', 'no-cache, no-transform').header('X-Accel-Buffering', 'no').header('X-Cache', xCache).header('X-Cache-Key', facts.key)
    reply.send(stream)
  }
  const send = (data: string): void => {
    sent.push(data)
    if (!includeUsage && isUsageChunk(data)) return
    stream?.write(sseEvent(data))
  }
  // A request keeps to the first feed it hears from: a feed that replaces it is another build's chunks.
  let feed: number | undefined
  const unwatch = control.noStore
    ? () => {}
    : fastify.chat.completions.live.watch(facts.key, chunk => {
      feed ??= chunk.feed
      if (chunk.feed !== feed) return
      start(joining || fastify.chat.completions.relayed(facts.key) ? 'COALESCED' : 'MISS')
      send(chunk.data)
    })
  try {
    let chunks: string[]
    let offsets: number[] | undefined
    if (control.noStore) {
      if (!fastify.chat.completions.hasUpstream) throw noUpstream()
      start('BYPASS')
      chunks = await streamCompletion(fastify.chat.completions.upstreamOptions(), facts.canonical, AbortSignal.timeout(fastify.config.openai.timeoutMs), data => send(data))
    } else {
      const resolution = await complete(fastify, facts, control, apiKey)
      chunks = resolution.value.chunks
      offsets = resolution.value.offsets
      if (stream === undefined) reply.header('Age', String(Math.max(0, Math.floor((Date.now() - resolution.writtenAt) / 1000))))
      start(resolution.status.toUpperCase())
    }
    if (!startsWith(chunks, sent)) {
      // What this request got live is not how the stored completion begins (the build it
      // joined died and another replaced it): it cannot be taken back, so the stream ends in an error.
      throw new OpenAIError(502, 'the completion this stream joined broke off and was written again; ask again (it is cached now)', 'upstream_error', 'joined_stream_broken')
    }
    const replayStart = Date.now()
    const from = sent.length
    for (let i = from; i < chunks.length; i++) {
      // X-Replay-Pace: original: each chunk at the moment after the first it was written.
      const at = pace && offsets !== undefined ? offsets[i] - offsets[from] : 0
      const wait = at - (Date.now() - replayStart)
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, Math.min(wait, 10_000)))
      send(chunks[i])
    }
    stream?.write(SSE_DONE)
  } catch (err) {
    if (stream === undefined) throw err
    const known = asOpenAIError(err)
    stream.write(sseEvent(JSON.stringify({ error: { message: known?.message ?? 'the completion failed midway', type: known?.type ?? 'server_error', code: known?.code ?? 'stream_failed' } })))
  } finally {
    unwatch()
    stream?.end()
  }
  return reply
}

export default routes
