import type { FastifyReply } from 'fastify'

/** An error as OpenAI's API shapes it, so SDKs show it properly. */
export class OpenAIError extends Error {
  override readonly name: string = 'OpenAIError'
  readonly statusCode: number
  readonly type: string
  readonly code: string
  readonly retryAfter: string | undefined

  constructor (statusCode: number, message: string, type: string, code: string, retryAfter?: string) {
    super(message)
    this.statusCode = statusCode
    this.type = type
    this.code = code
    this.retryAfter = retryAfter
  }
}

export function sendOpenAIError (reply: FastifyReply, err: OpenAIError): FastifyReply {
  if (err.retryAfter !== undefined) reply.header('Retry-After', err.retryAfter)
  return reply.code(err.statusCode).send({ error: { message: err.message, type: err.type, code: err.code, param: null } })
}
