import createError from '@fastify/error'

/** Every error the server answers with on purpose, defined once with its code and status. */
export const InvalidProfileError = createError<[string]>('NARR_INVALID_PROFILE', 'Invalid profile: %s', 400)
export const NotFoundError = createError<[string, string]>('NARR_NOT_FOUND', 'Route %s %s not found', 404)
export const NotReadyError = createError('NARR_NOT_READY', 'The server is starting or closing', 503)
