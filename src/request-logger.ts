import type { FastifyBaseLogger } from 'fastify'
import type { Bindings, ChildLoggerOptions } from 'fastify/types/logger.js'

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'
type LogArgs = [unknown, ...unknown[]]

/**
 * A request's logger that becomes pino's child logger only when the request
 * writes a line. Fastify makes a child logger for every request (its request
 * id bound); pino's child() serializes the bindings each time, and at the
 * production level (warn) almost no request ever writes a line: on the hit
 * path that child was a measured share of the CPU per hit (bench/RESULTS.md,
 * issue 16). A line below the level is dropped without making the child.
 */
export class RequestLogger implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions
  #child: FastifyBaseLogger | undefined

  constructor (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  /** pino's child, made once, on the first line written. */
  get #real (): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  get level (): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level
  }

  set level (level: string) {
    this.#real.level = level
  }

  /** Whether a line at `level` would be written, without making the child. */
  #writes (level: Level): boolean {
    // Once made, the child decides; a route's own level needs the child. Else the
    // parent says (pino can); a logger that cannot is asked to write.
    if (this.#child !== undefined || this.#options.level !== undefined) return true
    const enabled = (this.#parent as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled
    return typeof enabled !== 'function' || enabled.call(this.#parent, level)
  }

  fatal (...args: LogArgs): void { this.#write('fatal', args) }
  error (...args: LogArgs): void { this.#write('error', args) }
  warn (...args: LogArgs): void { this.#write('warn', args) }
  info (...args: LogArgs): void { this.#write('info', args) }
  debug (...args: LogArgs): void { this.#write('debug', args) }
  trace (...args: LogArgs): void { this.#write('trace', args) }
  silent (..._args: LogArgs): void {}

  #write (level: Level, args: LogArgs): void {
    if (!this.#writes(level)) return
    const real = this.#real
    ;(real[level] as (...args: LogArgs) => void).apply(real, args)
  }

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#real.child(bindings, options)
  }
}

/** Fastify's childLoggerFactory: a RequestLogger over the server's logger. */
export function requestLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new RequestLogger(logger, bindings, options)
}
