import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { adminDenied, adminScope, adminSecurity } from '../admin-scope.ts'
import { Type } from '@sinclair/typebox'
import { ADMIN_RATE_LIMIT } from '../../plugins/rate-limit.ts'
import { errorResponses } from '../../src/schemas/error.ts'
import { ApiKeyNotFoundError } from '../../src/errors.ts'
import { USER_ID_PATTERN } from '../../src/schemas/narrative.ts'

const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  tenant: Type.String({ description: 'Whose cache entries the key reads and writes; by default a tenant of its own' }),
  sharing: Type.Boolean({ description: 'True when an admin marked the tenant as sharing: its entries are in the scope every sharing tenant reads' }),
  rateLimit: Type.Integer({ description: 'Model calls a minute the key may cause (0: only the server\'s limits)' }),
  monthlyBudgetUsd: Type.Union([Type.Number(), Type.Null()], { description: 'Dollars a calendar month (UTC) its upstream calls may cost (MODEL_PRICES); past it, requests that need the upstream get a 429, hits are still served' }),
  refresh: Type.Boolean({ description: 'May ask for a new narrative on demand: `Cache-Control: no-cache` on POST /api/narrative' }),
  spentThisMonthUsd: Type.Optional(Type.Number({ description: 'What its upstream calls cost this calendar month (UTC)' })),
  savedThisMonthUsd: Type.Optional(Type.Number({ description: 'What its answers from the cache saved this month: for each, the cost of the call that wrote the entry (written every 5 s)' })),
  createdAt: Type.String({ format: 'date-time' }),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})
const NewKeySchema = Type.Object({
  // No control characters: a name is shown in lists and logs (and PostgreSQL refuses NUL in text).
  name: Type.String({ minLength: 1, maxLength: 100, pattern: USER_ID_PATTERN, description: '1 to 100 characters, no control characters (U+0000 to U+001F, U+007F to U+009F) and no lone surrogates (PostgreSQL could not store them as sent)' }),
  tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_.-]+$' })),
  rateLimit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  monthlyBudgetUsd: Type.Optional(Type.Number({ minimum: 0, maximum: 1_000_000_000 })),
  refresh: Type.Optional(Type.Boolean({ default: false, description: 'The refresh right: `Cache-Control: no-cache` on POST /api/narrative (a new model call on demand). Default false' }))
}, { additionalProperties: false })

const denied = adminDenied
const security = adminSecurity
const iso = (ms: number | null): string | null => ms === null ? null : new Date(ms).toISOString()

/** API keys for /v1/chat/completions, for admins: made (the secret shown once), listed, revoked. Audited. */
const routes: FastifyPluginAsyncTypebox = async (fastify) => {
  adminScope(fastify)
  const config = { rateLimit: ADMIN_RATE_LIMIT }
  const view = (k: { id: string, name: string, tenant: string, sharing: boolean, rateLimit: number, monthlyBudgetUsd: number | null, refresh: boolean, createdAt: number, revokedAt: number | null }) => ({ ...k, createdAt: iso(k.createdAt) as string, revokedAt: iso(k.revokedAt) })

  fastify.post('/api/keys', {
    config,
    schema: {
      tags: ['admin'],
      operationId: 'createApiKey',
      security,
      summary: 'Make an API key for /v1/chat/completions (the secret is in this answer only)',
      body: NewKeySchema,
      response: { 201: { ...Type.Intersect([ApiKeySchema, Type.Object({ secret: Type.String({ description: 'Shown once; only its hash is kept' }) })]), description: 'The key, with its secret' }, ...errorResponses([400], { 400: 'The body names the field that is wrong' }), ...denied }
    }
  }, async (request, reply) => {
    const { key, secret } = await fastify.chat.apiKeys.create({ name: request.body.name, tenant: request.body.tenant, rateLimit: request.body.rateLimit ?? fastify.config.generationRateLimit, monthlyBudgetUsd: request.body.monthlyBudgetUsd, refresh: request.body.refresh === true })
    return await reply.code(201).send({ ...view(key), secret })
  })

  fastify.get('/api/keys', {
    config,
    schema: { tags: ['admin'], operationId: 'listApiKeys', security, summary: 'The API keys (never their secrets)', response: { 200: { ...Type.Array(ApiKeySchema), description: 'Every key, revoked ones included' }, ...denied } }
  }, async () => {
    const ledger = await fastify.chat.apiKeys.ledger(new Date().toISOString().slice(0, 7))
    return (await fastify.chat.apiKeys.list()).map(k => ({ ...view(k), spentThisMonthUsd: ledger.get(k.id)?.spentUsd ?? 0, savedThisMonthUsd: ledger.get(k.id)?.savedUsd ?? 0 }))
  })

  fastify.delete('/api/keys/:id', {
    config,
    schema: { tags: ['admin'], operationId: 'revokeApiKey', security, summary: 'Revoke an API key (within 30 s on every instance)', params: Type.Object({ id: Type.String({ pattern: '^key_[A-Za-z0-9_-]{1,64}$', description: 'a key id, as POST /api/keys gave it' }) }), response: { 204: { type: 'null', description: 'Revoked' }, ...errorResponses([404], { 404: 'No live key has this id' }), ...denied } }
  }, async (request, reply) => {
    if (!await fastify.chat.apiKeys.revoke(request.params.id)) throw new ApiKeyNotFoundError(request.params.id)
    fastify.chat.forgetKeys()
    return await reply.code(204).send()
  })

  fastify.put('/api/tenants/:tenant/sharing', {
    config,
    schema: {
      tags: ['admin'],
      operationId: 'setTenantSharing',
      security,
      summary: 'Mark a tenant as sharing its /v1 cache entries with every other sharing tenant, or not',
      params: Type.Object({ tenant: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_.-]+$' }) }),
      body: Type.Object({ sharing: Type.Boolean() }, { additionalProperties: false }),
      response: { 200: { ...Type.Object({ tenant: Type.String(), sharing: Type.Boolean() }), description: 'The tenant as it is now (its keys follow within 30 s)' }, ...errorResponses([400], { 400: 'The tenant or the body names what is wrong' }), ...denied }
    }
  }, async (request) => {
    await fastify.chat.apiKeys.setSharing(request.params.tenant, request.body.sharing)
    fastify.chat.forgetKeys()
    return { tenant: request.params.tenant, sharing: request.body.sharing }
  })
}

export default routes
