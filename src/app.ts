import { isUtf8 } from 'node:buffer'
import { STATUS_CODES, type Server } from 'node:http'
import { LogController, type FastifyError, type FastifyHttpOptions, type FastifyInstance, type FastifyServerOptions, type preValidationHookHandler } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import configPlugin from '../plugins/config.ts'
import redisPlugin from '../plugins/redis.ts'
import breakerPlugin, { type BreakerPluginOptions } from '../plugins/breaker.ts'
import locksPlugin from '../plugins/locks.ts'
import narratorPlugin from '../plugins/narrator.ts'
import cachePlugin, { type CachePluginOptions } from '../plugins/cache.ts'
import chatPlugin from '../plugins/chat.ts'
import dbPlugin, { type DbPluginOptions } from '../plugins/db.ts'
import authPlugin from '../plugins/auth.ts'
import rateLimitPlugin from '../plugins/rate-limit.ts'
import swaggerPlugin, { swaggerUiPlugin } from '../plugins/swagger.ts'
import metricsPlugin from '../plugins/metrics.ts'
import helmetPlugin from '../plugins/helmet.ts'
import fleetPlugin from '../plugins/fleet.ts'
import loadSheddingPlugin, { type LoadSheddingOptions } from '../plugins/load-shedding.ts'
import dashboardRoutes from '../routes/dashboard/index.ts'
import narrativeRoutes, { type NarrativeRoutesOptions } from '../routes/narrative/index.ts'
import adminRoutes from '../routes/admin/index.ts'
import chatRoutes from '../routes/chat/index.ts'
import { OpenAIError, sendOpenAIError } from '../routes/chat/openai-error.ts'
import keysRoutes from '../routes/keys/index.ts'
import healthRoutes from '../routes/health/index.ts'
import rolloutRoutes from '../routes/rollout/index.ts'
import prewarmSchedulePlugin, { type PrewarmSchedulePluginOptions } from '../plugins/prewarm-schedule.ts'
import type { Config } from './config.ts'
import type { Narrator } from './narrator/narrator.ts'
import { DuplicateJsonKeyError, InvalidUtf8Error, MethodNotAllowedError, NotFoundError, UnexpectedBodyError, UnsupportedEncodingError } from './errors.ts'
import { ownError } from './body-errors.ts'
import { codedBody } from './body-coding.ts'
import { duplicateKey } from './duplicate-key.ts'
import { clientErrorHandler } from './client-error.ts'
import { withHook } from './route-hooks.ts'
import { lenientUserPath } from './admin/user-path.ts'
import { formatValidationError } from './schemas/validation-message.ts'
import { requestIdOf } from './request-id.ts'
import { requestLogger } from './request-logger.ts'
import { fastifyTrustProxy } from './proxy-trust.ts'

export interface AppOptions {
  config?: Config
  /** Replaces the configured narrator (tests, benchmarks). */
  narrator?: Narrator
  breaker?: BreakerPluginOptions
  cache?: CachePluginOptions
  prewarmSchedule?: PrewarmSchedulePluginOptions
  db?: DbPluginOptions
  routes?: NarrativeRoutesOptions
  loadShedding?: LoadSheddingOptions
  /** Connections still open this long after close() began are cut (default CLOSE_CONNECTIONS_AFTER_MS). */
  closeConnectionsAfterMs?: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment close() begins. */
    isClosing: () => boolean
  }
  interface FastifyRequest {
    /** The JSON text of the body, when the route read it whole before parsing (routes/narrative/memory-hit.ts). */
    jsonBodyText?: string
  }
}

/** An idle keep-alive connection is closed this long after its last answer (plus Node's own 1 s). */
export const KEEP_ALIVE_IDLE_MS = 65_000
/** A connection silent this long while its request is being answered is closed. */
export const SILENT_ANSWER_MS = 60_000
/** Headers must arrive within this long, and the whole request within REQUEST_MS. */
export const HEADERS_MS = 10_000
export const REQUEST_MS = 30_000
/**
 * Once close() begins, connections still open this long after (a request not
 * yet finished, a client that sent half its headers, a stream) are cut, so a
 * SIGTERM ends within its 10 s grace whatever the clients do.
 */
export const CLOSE_CONNECTIONS_AFTER_MS = 6000

/** Body limit of the public route: 16 KiB, as the contract says. */
export const BODY_LIMIT = 16 * 1024

/**
 * Fastify's constructor options for this app. Ajv is set so that unknown
 * properties are refused (not stripped), strings are never coerced into
 * numbers, and NaN/Infinity are not numbers.
 */
export function serverOptions (config: Pick<Config, 'logLevel' | 'trustProxy'>, logger: FastifyServerOptions['logger'] = { level: config.logLevel }): FastifyHttpOptions<Server> {
  return {
    logger,
    // A request's logger is pino's child only once it writes a line (src/request-logger.ts).
    childLoggerFactory: requestLogger,
    bodyLimit: BODY_LIMIT,
    trustProxy: fastifyTrustProxy(config.trustProxy),
    // An incoming X-Request-Id is kept when it is a short token, else a fresh id (src/request-id.ts);
    // the app's onSend hook sends it back.
    requestIdHeader: false,
    genReqId: requestIdOf,
    // A user id of `%` can be deleted as typed (src/admin/user-path.ts).
    rewriteUrl: lenientUserPath,
    // One line per request instead of Fastify's two: plugins/metrics.ts writes it.
    logController: new LogController({ disableRequestLogging: true }),
    // Fastify's own JSON parser refuses `__proto__` and `constructor.prototype`
    // keys (the app's error handler says which: src/body-errors.ts).
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // A slow client cannot hold a connection open for ever: headers within 10 s,
    // the whole request within 30 s, checked every second (Node's default check
    // runs every 30 s); a connection silent for 60 s while its request is being
    // answered (a stuck handler or stream) is closed.
    // Keep-alive: a connection idle after its last answer is closed after
    // KEEP_ALIVE_IDLE_MS (65 s), advertised as `Keep-Alive: timeout=65`; Node
    // destroys the socket 1 s later still, so a client that honours the header
    // hangs up first. 65 s is above common balancers' idle timeout (AWS ALB and
    // nginx's upstream keep-alive: 60 s), so the balancer, not this server, ends
    // an idle connection and never sends a request on one being closed (a 502).
    // Fastify sets keepAliveTimeout, requestTimeout and connectionTimeout
    // (server.setTimeout) on the server it creates; `http` is passed to
    // http.createServer as it is.
    connectionTimeout: SILENT_ANSWER_MS,
    keepAliveTimeout: KEEP_ALIVE_IDLE_MS,
    requestTimeout: REQUEST_MS,
    http: { headersTimeout: HEADERS_MS, connectionsCheckingInterval: 1000 },
    // close(): idle keep-alive connections are closed at once (the default,
    // said here); the rest are cut CLOSE_CONNECTIONS_AFTER_MS later (app's preClose).
    forceCloseConnections: 'idle',
    // A request Node refuses before Fastify sees it is answered in the app's shape, saying why.
    clientErrorHandler: clientErrorHandler({ headersMs: HEADERS_MS, requestMs: REQUEST_MS }),
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false, strictNumbers: true }
    },
    schemaErrorFormatter: formatValidationError
  }
}

/** The whole app as one plugin: plugins, then routes, then the error and 404 handlers. */
export default async function app (fastify: FastifyInstance, opts: AppOptions): Promise<void> {
  const instance = fastify.withTypeProvider<TypeBoxTypeProvider>()
  // JSON is the only body this server takes, parsed by Fastify's own parser:
  // any other content type (text/plain included, which Fastify would take as
  // a string) is a 415 naming application/json (ownError: src/body-errors.ts).
  instance.removeContentTypeParser('text/plain')
  // Fastify's own JSON parser, given the body's bytes: they must be UTF-8 (Node
  // would read other bytes as U+FFFD, so two different bodies would become one)
  // and sent as they are. The text is kept for the error handler, which says
  // where a syntax error is (src/body-errors.ts).
  const parseJson = instance.getDefaultJsonParser('error', 'error')
  instance.removeContentTypeParser('application/json')
  instance.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer
    const coded = codedBody(request.headers)
    if (coded !== undefined) return done(new UnsupportedEncodingError(...coded), undefined)
    if (!isUtf8(bytes)) return done(new InvalidUtf8Error(), undefined)
    const text = bytes.toString('utf8')
    request.jsonBodyText ??= text
    parseJson(request, text, (err, parsed) => {
      // A key named twice in one object: refused rather than silently read as its last value.
      const twice = err === null ? duplicateKey(text) : undefined
      if (twice !== undefined) done(new DuplicateJsonKeyError(twice.key, twice.path), undefined)
      else done(err, parsed)
    })
  })
  // The JSON text of a small body, read whole by the narrative route's
  // preParsing hook before Fastify parses it: the service's memo keys on it.
  instance.decorateRequest('jsonBodyText', undefined)
  // Which methods each route path takes (every route, so before any plugin adds one):
  // another method on a known path is a 405 with Allow.
  const allowed = new AllowedMethods()
  instance.addHook('onRoute', route => {
    allowed.add(route.url, route.method)
    // A route with no body schema takes no body: one sent (`{"paused": false}` to
    // .../pause) is refused rather than ignored. GET and HEAD bodies are not read.
    const methods = [route.method].flat()
    if (route.schema?.body === undefined && methods.some(m => m !== 'GET' && m !== 'HEAD')) {
      const refuseBody: preValidationHookHandler = (request, _reply, done) => {
        done(request.body === undefined || request.body === null ? undefined : new UnexpectedBodyError(request.method, route.url))
      }
      route.preValidation = withHook(route.preValidation, refuseBody)
    }
  })
  await instance.register(configPlugin, { config: opts.config })
  // First of the request hooks: an overloaded process refuses at once, before any work.
  await instance.register(loadSheddingPlugin, opts.loadShedding ?? {})
  // Before any plugin that adds a route (plugins/metrics.ts adds /metrics): the document sees every route.
  await instance.register(swaggerPlugin)
  // Metrics first: the plugins after it provide their own figures to it.
  await instance.register(metricsPlugin)
  await instance.register(redisPlugin)
  await instance.register(breakerPlugin, opts.breaker ?? {})
  await instance.register(locksPlugin)
  await instance.register(narratorPlugin, { narrator: opts.narrator })
  await instance.register(dbPlugin, opts.db ?? {})
  await instance.register(cachePlugin, opts.cache ?? {})
  await instance.register(chatPlugin)
  await instance.register(fleetPlugin)
  await instance.register(authPlugin)
  await instance.register(rateLimitPlugin)

  // Once closing has begun, answers ask keep-alive clients to hang up, so an idle
  // connection cannot keep a SIGTERM waiting (and /ready says 503).
  let closing = false
  instance.decorate('isClosing', () => closing)
  // Connections still open CLOSE_CONNECTIONS_AFTER_MS after close() began are
  // cut (idle ones are closed at once by Fastify): the server's close waits
  // for every connection, and the rest of the app's closing waits for it.
  let cutTimer: NodeJS.Timeout | undefined
  instance.addHook('preClose', async () => {
    closing = true
    cutTimer = setTimeout(() => { fastify.server.closeAllConnections() }, opts.closeConnectionsAfterMs ?? CLOSE_CONNECTIONS_AFTER_MS)
    cutTimer.unref()
  })
  instance.addHook('onClose', async () => { clearTimeout(cutTimer) })
  // Every answer carries its request id; once closing has begun, keep-alive
  // clients are asked to hang up. Callback style: an async hook costs every request a promise.
  instance.addHook('onSend', function answerHeaders (request, reply, payload, done) {
    reply.header('X-Request-Id', request.id)
    if (closing) reply.header('Connection', 'close')
    done(null, payload)
  })

  instance.setErrorHandler((fastifyError: FastifyError, request, reply) => {
    const error = ownError(fastifyError, request)
    const status = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500
    // Our own 5xx (a dependency refused on purpose, e.g. 503) say why; anything else is hidden.
    const ours = typeof error.code === 'string' && error.code.startsWith('NARR_') && status !== 500
    if (status >= 500 && !ours) {
      request.log.error({ err: { message: error.message, code: error.code, stack: error.stack } }, 'request failed')
      return reply.code(status).send({ statusCode: status, code: 'NARR_INTERNAL', error: STATUS_CODES[status] ?? 'Error', message: 'Internal error; the request id is in the logs' })
    }
    request.log.info({ code: error.code, reason: error.message }, 'request refused')
    const retryAfter = (error as { retryAfterSeconds?: unknown }).retryAfterSeconds
    if (typeof retryAfter === 'number') reply.header('Retry-After', String(retryAfter))
    return reply.code(status).send({ statusCode: status, code: error.code ?? 'NARR_BAD_REQUEST', error: STATUS_CODES[status] ?? 'Error', message: error.message })
  })

  instance.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]
    const methods = allowed.of(path)
    // Under /v1, OpenAI's shape: what an SDK pointed at this server can read.
    const openAI = path.startsWith('/v1/')
    if (methods.length > 0 && !methods.includes(request.method)) {
      const notAllowed = new MethodNotAllowedError(request.method, path, methods.join(', '))
      reply.header('Allow', methods.join(', '))
      if (openAI) return sendOpenAIError(reply, new OpenAIError(405, notAllowed.message, 'invalid_request_error', 'method_not_allowed'))
      return reply.code(405).send({ statusCode: 405, code: notAllowed.code, error: 'Method Not Allowed', message: notAllowed.message })
    }
    const error = new NotFoundError(request.method, path)
    if (openAI) return sendOpenAIError(reply, new OpenAIError(404, `${error.message}; this server answers /v1/chat/completions, /v1/models and /v1/cache/explain`, 'invalid_request_error', 'not_found'))
    return reply.code(404).send({ statusCode: 404, code: error.code, error: 'Not Found', message: error.message })
  })

  await instance.register(healthRoutes)
  await instance.register(narrativeRoutes, opts.routes ?? {})
  await instance.register(adminRoutes)
  await instance.register(chatRoutes)
  await instance.register(keysRoutes)
  await instance.register(prewarmSchedulePlugin, opts.prewarmSchedule ?? {})
  await instance.register(rolloutRoutes)
  // The HTML pages, in a scope of their own with the security headers.
  await instance.register(async pages => {
    await pages.register(helmetPlugin)
    await pages.register(swaggerUiPlugin)
    await pages.register(dashboardRoutes)
  })
}

/** Route paths (`:param` and `*` included) and the methods each takes. */
class AllowedMethods {
  private readonly routes: Array<{ pattern: RegExp, methods: Set<string> }> = []
  private readonly byPath = new Map<string, Set<string>>()

  add (path: string, method: string | string[]): void {
    let methods = this.byPath.get(path)
    if (methods === undefined) {
      methods = new Set()
      this.byPath.set(path, methods)
      const source = path.split(/(:[A-Za-z0-9_]+|\*)/).map(part =>
        part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('')
      this.routes.push({ pattern: new RegExp(`^${source}$`), methods })
    }
    for (const m of Array.isArray(method) ? method : [method]) methods.add(m.toUpperCase())
  }

  /** The methods taken by the routes matching this path, in a stable order. */
  of (path: string): string[] {
    const found = new Set<string>()
    for (const route of this.routes) if (route.pattern.test(path)) for (const m of route.methods) found.add(m)
    return [...found].sort()
  }
}
