import createError from '@fastify/error'

/** Every error the server answers with on purpose, defined once with its code and status. */
export const InvalidProfileError = createError<[string]>('NARR_INVALID_PROFILE', 'Invalid profile: %s', 400)
export const InvalidLocaleError = createError<[string]>('NARR_INVALID_LOCALE', 'Invalid locale: %s', 400)
export const NotFoundError = createError<[string, string]>('NARR_NOT_FOUND', 'Route %s %s not found', 404)
export const NotReadyError = createError('NARR_NOT_READY', 'The server is starting or closing', 503)
export const GenerationRateLimitedError = createError<[number, number]>('NARR_RATE_LIMITED', 'This client may cause %s new narratives a minute; try again in %s s (cached narratives are never limited)', 429)
export const GenerationGlobalLimitedError = createError<[number, number]>('NARR_GLOBAL_RATE_LIMITED', 'All clients together may cause %s new narratives a minute; try again in %s s (cached narratives are never limited)', 429)
export const MetricsUnavailableError = createError<[string]>('NARR_METRICS_UNAVAILABLE', 'Metrics are unavailable: %s', 503)
export const RateLimitStoreDownError = createError('NARR_RATE_LIMIT_STORE_DOWN', 'The rate-limit store is unavailable; admin routes are closed until it is back', 503)
export const AdminIpForbiddenError = createError<[string]>('NARR_ADMIN_IP_FORBIDDEN', 'Admin routes are not open to %s', 403)
export const AdminRoleForbiddenError = createError('NARR_ADMIN_ROLE_REQUIRED', 'This token does not carry the admin role', 403)
export const AdminTokenError = createError<[string]>('NARR_ADMIN_TOKEN_INVALID', 'A valid admin token is required: %s', 401)
export const InvalidPatternError = createError<[string]>('NARR_INVALID_PATTERN', 'Invalid pattern: %s', 400)
export const UnsupportedMediaTypeError = createError<[string]>('NARR_UNSUPPORTED_MEDIA_TYPE', 'Unsupported Media Type: %s; send the body as application/json', 415)
export const BodyTooLargeError = createError<[number, number]>('NARR_BODY_TOO_LARGE', 'Request body is too large: the limit is %s KiB (%s bytes)', 413)
export const MethodNotAllowedError = createError<[string, string, string]>('NARR_METHOD_NOT_ALLOWED', 'Method %s is not allowed on %s; allowed: %s', 405)
export const ApiKeyNotFoundError = createError<[string]>('NARR_API_KEY_NOT_FOUND', 'No live API key has the id %s', 404)
