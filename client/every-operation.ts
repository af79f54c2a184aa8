// Compiled by `npm run client:check` (and `npm run typecheck`), never run: one call
// of every operation in openapi/openapi.json, each answer used as its own type,
// without a cast. A route added to the document without a call here fails the check.
import type { operations } from './openapi.js'
import { createNarrativeClient, type ApiError, type NarrativeAnswer } from './index.js'

const client = createNarrativeClient({ adminToken: 'a token' })

/** Every operationId, and the call of it below: TypeScript fails when one is missing or unknown. */
export const calls: { [Id in keyof operations]: () => Promise<unknown> } = {
  getNarrative: async () => {
    const { data, error } = await client.POST('/api/narrative', {
      body: { profile: { classification: 'hybrid', hybrid: ['Vega', 'Sirius'], percentages: { Vega: 40, Sirius: 30 } }, locale: 'fr', userId: 'u-1' }
    })
    if (data !== undefined) {
      // The JSON answer, as the JSON body: not a string.
      const answer: NarrativeAnswer = data
      const status: 'hit' | 'stale' | 'durable' | 'miss' | 'fallback' = data.cache.status
      const summary: string = data.narrative.summary
      // @ts-expect-error the answer is an object, never a string
      const text: string = data
      return [answer, status, summary, text]
    }
    const refused: ApiError | undefined = error
    return refused?.code
  },
  health: async () => {
    const { data } = await client.GET('/health')
    const ok: 'ok' | undefined = data?.status
    return ok
  },
  ready: async () => {
    const { data, error } = await client.GET('/ready')
    // A 503 answers the same readiness body (starting, closing or overloaded); a 500 the Error body.
    const status: 'ready' | 'starting' | 'closing' | 'overloaded' | undefined = data?.status ?? (error !== undefined && 'status' in error ? error.status : undefined)
    return status
  },
  metrics: async () => {
    const { data } = await client.GET('/metrics', { parseAs: 'text' })
    const text: string | undefined = data
    return text
  },
  getStats: async () => {
    const { data, error } = await client.GET('/api/narrative/stats')
    const hitRate: number | undefined = data?.hitRate
    return hitRate ?? error?.message
  },
  getAnalytics: async () => {
    const { data } = await client.GET('/api/narrative/analytics', { params: { query: { period: '7d' } } })
    const saved: number | undefined = data?.estimatedCost.saved
    return saved
  },
  getHistory: async () => {
    const { data } = await client.GET('/api/narrative/history', { params: { query: { minutes: '60' } } })
    const p95: number | null | undefined = data?.buckets[0]?.generationP95Ms
    const refused: number | undefined = data?.buckets[0]?.refused
    return [p95, refused]
  },
  getAuditLog: async () => {
    const { data } = await client.GET('/api/narrative/audit', { params: { query: { limit: '50', before: '1000' } } })
    const outcome: 'allowed' | 'denied' | undefined = data?.entries[0]?.outcome
    const next: number | null | undefined = data?.next
    return [outcome, next]
  },
  deleteUserData: async () => {
    const { data } = await client.DELETE('/api/narrative/user/{userId}', { params: { path: { userId: 'u-1' } } })
    const rows: number | undefined = data?.deleted_analytics_rows
    return rows
  },
  invalidateCache: async () => {
    const { data } = await client.DELETE('/api/narrative/cache', { params: { query: { pattern: 'narr:*' } } })
    const deleted: number | undefined = data?.deleted
    return deleted
  },
  prewarm: async () => {
    const { data } = await client.POST('/api/narrative/prewarm', { body: { top: 10, period: '1d', concurrency: 2 } })
    const warmed: number | undefined = data?.warmed
    return warmed
  },
  createApiKey: async () => {
    const { data } = await client.POST('/api/keys', { body: { name: 'an app', rateLimit: 60 } })
    const secret: string | undefined = data?.secret
    return secret
  },
  listApiKeys: async () => {
    const { data } = await client.GET('/api/keys')
    const names: string[] | undefined = data?.map(k => k.name)
    return names
  },
  revokeApiKey: async () => {
    const { response } = await client.DELETE('/api/keys/{id}', { params: { path: { id: 'key_1' } } })
    return response.status
  },
  // The /v1 routes take an API key, not the admin token: OpenAI's SDKs are their usual clients.
  createChatCompletion: async () => {
    const { data, error } = await client.POST('/v1/chat/completions', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } })
    return data ?? error?.error.message
  },
  explainChatCache: async () => {
    const { data } = await client.POST('/v1/cache/explain', { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] } })
    const key: string | undefined = data?.key
    return key
  },
  setTenantSharing: async () => {
    const { data } = await client.PUT('/api/tenants/{tenant}/sharing', { params: { path: { tenant: 'team-a' } }, body: { sharing: true } })
    const sharing: boolean | undefined = data?.sharing
    return sharing
  },
  listModels: async () => {
    const { data } = await client.GET('/v1/models')
    return data
  },
  getRollout: async () => {
    const { data } = await client.GET('/api/narrative/rollout')
    const remaining: number | undefined = data?.remaining
    const active: string | undefined = data?.active
    return [remaining, active]
  },
  pauseRollout: async () => {
    const { data } = await client.POST('/api/narrative/rollout/pause')
    const paused: boolean | undefined = data?.paused
    return paused
  },
  resumeRollout: async () => {
    const { data } = await client.POST('/api/narrative/rollout/resume')
    const paused: boolean | undefined = data?.paused
    return paused
  }
}
