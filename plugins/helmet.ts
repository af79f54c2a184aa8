import fp from 'fastify-plugin'
import helmet from '@fastify/helmet'

/**
 * Security headers (@fastify/helmet) and a strict Content-Security-Policy for
 * the HTML pages: scripts and styles from this origin only, no inline script,
 * nothing framed. Swagger UI brings its own CSP (staticCSP in
 * plugins/swagger.ts). Registered in the pages scope of src/app.ts only: its
 * two hooks run on every request in scope, and the JSON API has no use for
 * them (they cost the hit path about 3% of its CPU).
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
