import fp from 'fastify-plugin'
import helmet from '@fastify/helmet'

/**
 * Security headers (@fastify/helmet) on every answer, and a strict
 * Content-Security-Policy for HTML pages: scripts and styles from this origin
 * only, no inline script, nothing framed. Swagger UI brings its own CSP
 * (staticCSP in plugins/swagger.ts).
 */
export default fp(async (fastify) => {
  await fastify.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        // Plain HTTP behind a private host name must keep working; TLS is the proxy's job.
        upgradeInsecureRequests: null
      }
    },
    // The API is called from browsers of other origins when CORS_ORIGINS allows it.
    crossOriginResourcePolicy: { policy: 'same-site' }
  })
}, { name: 'helmet' })
