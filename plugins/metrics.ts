import fp from 'fastify-plugin'
import type { onResponseHookHandler } from 'fastify'
import cluster from 'node:cluster'
import { createHash } from 'node:crypto'
import { createMetrics, type Metrics } from '../src/metrics.ts'
import { AdminIpForbiddenError, MetricsUnavailableError } from '../src/errors.ts'
import { fleetMetrics, shareMetrics } from '../src/workers.ts'
import { errorResponses } from '../src/schemas/error.ts'
import { withHook } from '../src/route-hooks.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
  interface FastifyRequest {
    /** Set by the narrative route: what the answer was, for metrics and the log line. */
    cacheStatus?: string
    cacheKey?: string
  }
}

/** The key's last part, hashed again: enough to follow one entry through the logs, nothing more. */
export function keyHash (key: string): string {
  return createHash('sha1').update(key).digest('hex').slice(0, 12)
}

/** The levels at which the per-request line (info) is written. */
const LOGS_INFO: ReadonlySet<string> = new Set(['info', 'debug', 'trace'])

/** True when a logger at this level writes the per-request line: callers build the line only then. */
export function writesRequestLines (level: string): boolean {
  return LOGS_INFO.has(level)
}

/** The fields of the one line logged per request (besides the request id the logger binds). */
export function requestLine (method: string, route: string, statusCode: number, cache: string | undefined, key: string | undefined, elapsedMs: number): object {
  return {
    route: `${method} ${route}`,
    statusCode,
    cache,
    keyHash: key === undefined ? undefined : keyHash(key),
    ms: Math.round(elapsedMs * 10) / 10
  }
}

/**
 * Prometheus metrics (prom-client) at GET /metrics, allowlisted like the admin
 * routes, and the one log line per request: request id, route, status, cache
 * status, key hash, duration. Nothing else of the request is logged: no
 * headers (so no token), no body (so no userId).
 */
export default fp(async (fastify) => {
  // Figures are provided by the plugins that own them (metrics.provide, metrics.addBreaker).
  const metrics = createMetrics()
  fastify.decorate('metrics', metrics)
  // One of several workers (WORKERS > 1): a scrape must see them all, whichever worker it reaches.
  const inCluster = cluster.isWorker
  if (inCluster) shareMetrics(metrics.registry)
  fastify.decorateRequest('cacheStatus', undefined)
  fastify.decorateRequest('cacheKey', undefined)

  // The latency of answers with a cache status, by route: a hook on each route,
  // which knows its URL (request.routeOptions builds an object on every read).
  fastify.addHook('onRoute', route => {
    const url = route.url
    const timed: onResponseHookHandler = (request, reply, done) => {
      if (request.cacheStatus !== undefined) metrics.latency.labels(url, request.cacheStatus).observe(reply.elapsedTime / 1000)
      done()
    }
    route.onResponse = withHook(route.onResponse, timed)
  })
  // Callback style, and the log line built only when it is written: this runs on every request.
  fastify.addHook('onResponse', function logRequestLine (request, reply, done) {
    if (writesRequestLines(request.log.level)) {
      request.log.info(requestLine(request.method, request.routeOptions.url ?? 'unknown', reply.statusCode, request.cacheStatus, request.cacheKey, reply.elapsedTime), 'request')
    }
    done()
  })

  fastify.get('/metrics', {
    schema: {
      tags: ['operations'],
      operationId: 'metrics',
      // No token: the admin allowlist (ADMIN_IP_ALLOWLIST) is what guards it.
      security: [],
      summary: 'Prometheus metrics (text exposition format); from an allowlisted address only',
      response: {
        200: { description: 'The metrics, in the Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
        ...errorResponses([403, 500, 503], {
          403: 'The address is not on the admin allowlist (ADMIN_IP_ALLOWLIST)',
          503: 'With WORKERS above 1: the metrics of the workers could not be gathered'
        })
      }
    }
  }, async (request, reply) => {
    // The admin allowlist (plugins/auth.ts, registered after this plugin, decorated by request time).
    if (!fastify.adminAllowlist.allows(request.ip)) throw new AdminIpForbiddenError(request.ip)
    if (inCluster) {
      const fleet = await fleetMetrics().catch((err: Error) => { throw new MetricsUnavailableError(err.message) })
      return await reply.type(fleet.contentType).send(fleet.text)
    }
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}, { name: 'metrics', dependencies: ['config', 'swagger'] })
