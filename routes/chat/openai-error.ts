import type { FastifyReply } from 'fastify'

/** An error as OpenAI's API shapes it, so SDKs show it properly. */
export class OpenAIError extends Error {
  override readonly name: string = 'OpenAIError'
  readonly statusCode: number
  readonly type: string
  readonly code: string
  readonly retryAfter: string | undefined
  /** The request field at fault (`messages[0].content`), when one is. */
  readonly param: string | null

  constructor (statusCode: number, message: string, type: string, code: string, retryAfter?: string, param: string | null = null) {
    super(message)
    this.statusCode = statusCode
    this.type = type
    this.code = code
    this.retryAfter = retryAfter
    this.param = param
  }
}

export function sendOpenAIError (reply: FastifyReply, err: OpenAIError): FastifyReply {
  if (err.retryAfter !== undefined) reply.header('Retry-After', err.retryAfter)
  return reply.code(err.statusCode).send({ error: { message: err.message, type: err.type, code: err.code, param: err.param } })
}
