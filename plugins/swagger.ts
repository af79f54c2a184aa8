import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { packageInfo as pkg } from '../src/package-info.js'

/** The OpenAPI document, built from the routes' TypeBox schemas, and Swagger UI at /documentation. */
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
  // staticCSP: Swagger UI's page gets a CSP with hashes of its own inline parts, instead of helmet's strict one.
  await fastify.register(swaggerUi, { routePrefix: '/documentation', staticCSP: true })
}, { name: 'swagger', dependencies: ['config'] })
