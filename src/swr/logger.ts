/** The slice of pino's logger the engine uses; a Fastify logger fits. */
export interface Logger {
  debug: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
}

export const silentLogger: Logger = { debug () {}, info () {}, warn () {}, error () {} }
