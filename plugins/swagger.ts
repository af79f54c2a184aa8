import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { packageInfo as pkg } from '../src/package-info.js'

/** The OpenAPI document, built from the routes' TypeBox schemas. Registered before the routes, so it sees them all. */
export default fp(async (fastify) => {
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Narrative cache server', version: pkg.version, description: pkg.description },
      tags: [
        { name: 'narrative', description: 'Narratives for user profiles, cached' },
        { name: 'admin', description: 'Stats, analytics and cache steering: a Bearer JWT with role admin, from an allowlisted address' },
        { name: 'operations', description: 'Health and readiness' }
      ],
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } }
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
