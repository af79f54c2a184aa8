import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { packageInfo as pkg } from '../src/package-info.ts'
import { ErrorSchema, OpenAIErrorSchema } from '../src/schemas/error.ts'

/**
 * The OpenAPI document, built from the routes' TypeBox schemas. Registered
 * before the routes, so it sees them all. Checked by `npm run lint:openapi`
 * (Redocly's recommended rules, redocly.yaml) and by the typed client in client/.
 */
export default fp(async (fastify) => {
  // The one error body, referred to by every error response ($ref: 'Error').
  fastify.addSchema(ErrorSchema)
  fastify.addSchema(OpenAIErrorSchema)
  await fastify.register(swagger, {
    // Schemas with an $id are components named by it (components/schemas/Error), not def-0.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Narrative cache server',
        version: pkg.version,
        description: pkg.description,
        license: { name: 'UNLICENSED: private, all rights reserved (package.json has "private": true)' }
      },
      // Relative: the server this document is served by (`npm start` on the defaults: http://localhost:3000).
      servers: [{ url: '/', description: 'The server this document is served by' }],
      tags: [
        { name: 'narrative', description: 'Narratives for user profiles, cached' },
        { name: 'admin', description: 'Stats, analytics and cache steering: a Bearer JWT with role admin, from an allowlisted address' },
        { name: 'operations', description: 'Health and readiness' }
      ],
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' }, apiKey: { type: 'http', scheme: 'bearer', description: 'An API key for /v1 (nck_…), issued by an admin with POST /api/keys' } }
      }
    },
    transformObject: documentObject => withLifecycleHeaders(('openapiObject' in documentObject ? documentObject.openapiObject : {}) as OpenApiDocument)
  })
}, { name: 'swagger', dependencies: ['config'] })

interface OpenApiResponse { description?: string, headers?: Record<string, unknown>, content?: unknown }
interface OpenApiDocument {
  paths?: Record<string, Record<string, { responses?: Record<string, OpenApiResponse> }>>
  components?: Record<string, Record<string, unknown> | undefined>
}

/** Routes never shed (plugins/load-shedding.ts). */
const NEVER_SHED = new Set(['/health', '/ready', '/metrics'])
const SHED_DESCRIPTION = 'The server is overloaded (load shedding: past a threshold of event-loop delay or memory): Retry-After says when to try again'

/**
 * What every route does and no route schema says: each answer carries
 * `X-Request-Id` (src/request-id.ts), and every route but health, readiness
 * and metrics may answer 503 with Retry-After when the process is overloaded
 * (plugins/load-shedding.ts). Added to each response of the document.
 */
function withLifecycleHeaders (doc: OpenApiDocument): OpenApiDocument {
  doc.components ??= {}
  doc.components.headers = {
    ...doc.components.headers,
    'X-Request-Id': {
      description: 'This request\'s id, as in the server\'s log lines: the request\'s own X-Request-Id when it was a short token (1 to 64 letters, digits, `.`, `_`, `:` or `-`), else one made by the server',
      schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' }
    },
    'Retry-After': { description: 'Seconds to wait before trying again', schema: { type: 'string', pattern: '^[0-9]+$' } }
  }
  for (const [path, operations] of Object.entries(doc.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      const responses = operation.responses ?? {}
      if (!NEVER_SHED.has(path)) {
        const existing = responses['503']
        const shedToo = `${existing?.description ?? ''}; or ${SHED_DESCRIPTION.charAt(0).toLowerCase()}${SHED_DESCRIPTION.slice(1)}`
        // Idempotent: the document may be transformed more than once.
        if (existing === undefined) responses['503'] = { description: SHED_DESCRIPTION, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }
        else if (existing.description !== SHED_DESCRIPTION && existing.description?.endsWith(shedToo.slice(shedToo.indexOf('; or '))) !== true) existing.description = shedToo
        responses['503'].headers = { ...responses['503'].headers, 'Retry-After': { $ref: '#/components/headers/Retry-After' } }
      }
      for (const response of Object.values(responses)) {
        response.headers = { ...response.headers, 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } }
      }
      operation.responses = responses
    }
  }
  return doc
}

/**
 * Swagger UI at /documentation, for the pages scope of src/app.ts (beside
 * helmet). staticCSP: its page gets a CSP with hashes of its own inline parts,
 * instead of helmet's strict one.
 */
export const swaggerUiPlugin = fp(async (fastify) => {
  // staticCSP: Swagger UI's page gets a CSP with hashes of its own inline parts, instead of helmet's strict one.
  await fastify.register(swaggerUi, {
    routePrefix: '/documentation',
    staticCSP: true,
    // Allow Swagger UI's own logo <style> (its static CSP lists no hash for it), and drop
    // upgrade-insecure-requests, which breaks the page on plain HTTP under any other host name.
    transformStaticCSP: (header: string) => header
      .replace("style-src 'self' https:", "style-src 'self' https: 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='")
      .replace(' upgrade-insecure-requests;', '')
  })
}, { name: 'swagger-ui', dependencies: ['swagger'] })
