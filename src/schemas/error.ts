import { Type, type TRefUnsafe } from '@sinclair/typebox'

/**
 * The body of every error answer (4xx and 5xx), defined once: registered with
 * fastify.addSchema (plugins/swagger.ts), so the OpenAPI document holds it once,
 * as components/schemas/Error, and every error response refers to it.
 */
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer({ description: 'The HTTP status, repeated' }),
  code: Type.String({ description: 'A stable code to branch on: NARR_… for this server\'s own refusals, FST_ERR_VALIDATION for a request that fails its schema' }),
  error: Type.String({ description: 'The status text' }),
  message: Type.String({ description: 'What was wrong, for a person: names the field, the limit or what is accepted' })
}, {
  $id: 'Error',
  title: 'Error',
  description: 'Every error answer, 4xx and 5xx, has this shape',
  examples: [
    { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body.profile.percentages is required' },
    { statusCode: 401, code: 'NARR_ADMIN_TOKEN_INVALID', error: 'Unauthorized', message: 'A valid admin token is required: the token has expired' },
    { statusCode: 413, code: 'NARR_BODY_TOO_LARGE', error: 'Payload Too Large', message: 'Request body is too large: the limit is 16 KiB (16384 bytes)' },
    { statusCode: 415, code: 'NARR_UNSUPPORTED_MEDIA_TYPE', error: 'Unsupported Media Type', message: 'Unsupported Media Type: text/plain; send the body as application/json' },
    { statusCode: 429, code: 'NARR_RATE_LIMITED', error: 'Too Many Requests', message: 'This client may cause 30 new narratives a minute; try again in 12 s (cached narratives are never limited)' },
    { statusCode: 500, code: 'NARR_INTERNAL', error: 'Internal Server Error', message: 'Internal error; the request id is in the logs' }
  ]
})

export type ErrorRef = TRefUnsafe<typeof ErrorSchema>

/** What each error status means on this server: the default description of its response. */
const MEANING = {
  400: 'The request is invalid: the message names the field or the rule',
  401: 'No valid admin token (Authorization: Bearer <JWT with role admin>)',
  403: 'The address is not on the admin allowlist, or the token lacks the admin role',
  413: 'The body is over the 16 KiB limit',
  404: 'There is no such resource',
  415: 'The body is not application/json',
  429: 'Too many requests: Retry-After says when to try again',
  500: 'An unexpected error; the request id is in the server\'s logs',
  503: 'A dependency this answer needs is unavailable, or the server is starting or closing',
  504: 'The request said only-if-cached (or bounded the age without the refresh right) and the cache has no answer for it'
} as const
export type ErrorStatus = keyof typeof MEANING

/** One error response: the shared Error schema, with a description of its own. */
export function errorResponse (description: string): ErrorRef {
  return Type.Ref(ErrorSchema, { description })
}

/** Error responses for these statuses, each with its usual meaning (`overrides` says it otherwise). */
export function errorResponses<S extends ErrorStatus> (statuses: S[], overrides: Partial<Record<S, string>> = {}): Record<S, ErrorRef> {
  return Object.fromEntries(statuses.map(s => [s, errorResponse(overrides[s] ?? MEANING[s])])) as Record<S, ErrorRef>
}

/** The body of every error of the OpenAI-compatible routes (/v1): OpenAI's own shape, so SDKs show it. */
export const OpenAIErrorSchema = Type.Object({
  error: Type.Object({
    message: Type.String({ description: 'What was wrong, for a person' }),
    type: Type.String({ description: 'invalid_request_error, rate_limit_error, server_error, upstream_error, or the upstream\'s own' }),
    code: Type.Union([Type.String(), Type.Null()], { description: 'A stable code: missing_api_key, invalid_api_key, missing_required_parameter, invalid_value, nesting_too_deep, invalid_number, invalid_json, duplicate_key, invalid_utf8, body_too_large, not_cached, no_upstream, invalid_cache_control, rate_limit_exceeded, …' }),
    param: Type.Union([Type.String(), Type.Null()], { description: 'The request parameter the error is about, as OpenAI names it (messages[0].role), when there is one' })
  })
}, { $id: 'OpenAIError', title: 'OpenAIError', description: 'Errors of the /v1 routes, in OpenAI\'s shape' })

/** /v1 error responses for these statuses, each described. */
export function openAIErrorResponses (described: Record<number, string>): Record<number, TRefUnsafe<typeof OpenAIErrorSchema>> {
  return Object.fromEntries(Object.entries(described).map(([status, description]) => [status, Type.Ref(OpenAIErrorSchema, { description })]))
}
