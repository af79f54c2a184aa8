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
    }
  })
}, { name: 'swagger', dependencies: ['config'] })

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
