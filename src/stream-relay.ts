import { randomUUID } from 'node:crypto'
import { Cluster, type Redis } from 'ioredis'
import type { CircuitBreaker } from './swr/breaker.ts'

/**
 * Relays the items a process writes for a key (a stream's chunks, say) to
 * followers on other processes, through one Redis stream per key while it
 * is written. Knows nothing of what the items are.
 *
 * The writer adds a begin marker, each item, then an end marker, with XADD
 * (MAXLEN ~ bounded) on the shared command connection; the stream key
 * expires on its own (a writer that dies leaks nothing) and a second after
 * the end. A follower first reads what was written so far (XRANGE), then blocks
 * for new entries (XREAD BLOCK) on a connection of its own, never the shared
 * one, until the end marker, its owner stops it, or nothing comes for too
 * long. It hands items on only from a begin marker: a sequence it could not
 * follow from its first item (trimmed by MAXLEN, or replaced by another
 * writer's) is cut off and reported, never passed on as if whole.
 */
export interface RelayOptions {
  /** The shared command client (writes) and the template of the followers' own connections. */
  redis: Redis | Cluster
  /** Writes and follows only while the breaker lets calls through. */
  breaker: CircuitBreaker
  /** Entries a stream keeps at most (approximately, MAXLEN ~): a follower that joins later than this cannot follow. */
  maxLength: number
  /** A stream's life when its writer never ends it (the writer's deadline and a margin). */
  ttlMs: number
  /**
   * How long an ended stream stays for followers still connecting or reading
   * it. Short: a new writer of the key replaces it anyway, and a follower
   * that read an earlier writer's stream by mistake (in the moment before the
   * new writer began) passed on items the caller must check. Default 1000 ms.
   */
  endedTtlMs?: number
  /** Each XREAD BLOCK; a stopped follower frees its connection within it. Default 500 ms. */
  blockMs?: number
  /** Followers at once in this process (each holds a connection); past it, follow() declines. Default 32. */
  maxFollowers?: number
  onError?: (err: Error, what: string) => void
}

/** How a follow ended: the writer's end marker (`done`, `failed`), or `cut` (could not follow from the first item, or stopped). */
export type FollowEnd = 'done' | 'failed' | 'cut'

export interface RelayWriter {
  push: (item: string) => void
  end: (outcome: 'done' | 'failed') => void
}

type Entry = [id: string, fields: string[]]

export class StreamRelay {
  private readonly options: Required<Omit<RelayOptions, 'onError'>> & Pick<RelayOptions, 'onError'>
  private readonly idle: Array<Redis | Cluster> = []
  private readonly busy = new Set<Redis | Cluster>()
  private following = 0
  private closed = false

  constructor (options: RelayOptions) {
    if (!(options.maxLength >= 16)) throw new Error('relay maxLength must be at least 16')
    if (!(options.ttlMs >= 1000)) throw new Error('relay ttlMs must be at least 1000')
    this.options = { endedTtlMs: 1000, blockMs: 500, maxFollowers: 32, ...options }
  }

  /** The writer for a key, or undefined when Redis is not healthy (then nobody follows it live). */
  writer (key: string): RelayWriter | undefined {
    if (this.closed || !this.options.breaker.allows()) return undefined
    const { redis, maxLength, ttlMs, endedTtlMs } = this.options
    const cap = ['MAXLEN', '~', String(maxLength), '*'] as const
    let broken = false
    const fail = (err: unknown): void => {
      if (broken) return
      broken = true
      this.options.onError?.(err as Error, `relay write of ${key}`)
    }
    // A new writer replaces whatever an earlier one left (a writer that died): its begin marker is the follower's cue.
    redis.multi().del(key).xadd(key, ...cap, 'b', randomUUID()).pexpire(key, ttlMs).exec().catch(fail)
    // Items pushed together (the events of one network read of the upstream's
    // stream, say) go out together: one pipeline, one write, at the end of the
    // tick, rather than a write (and a Redis read) each. Order is kept: one
    // connection, and end() sends what is pending first.
    let pending: string[] = []
    const flush = (): void => {
      const items = pending
      pending = []
      if (broken || items.length === 0) return
      if (items.length === 1) {
        redis.xadd(key, ...cap, 'i', items[0]).catch(fail)
        return
      }
      const batch = redis.pipeline()
      for (const item of items) batch.xadd(key, ...cap, 'i', item)
      batch.exec().then(results => {
        const failed = results?.find(([err]) => err !== null)?.[0]
        if (failed !== undefined && failed !== null) fail(failed)
      }, fail)
    }
    return {
      push: item => {
        if (broken) return
        pending.push(item)
        if (pending.length === 1) queueMicrotask(flush)
      },
      end: outcome => {
        flush()
        if (!broken) redis.multi().xadd(key, ...cap, 'e', outcome).pexpire(key, endedTtlMs).exec().catch(fail)
      }
    }
  }

  /**
   * Follows the key's stream: `onItem` with every item from the first, then
   * `onEnd` once. Returns the function that stops it (onEnd 'cut' if it had
   * not ended), or undefined when it cannot follow (Redis not healthy, too
   * many followers already): the caller then does without.
   */
  follow (key: string, onItem: (item: string) => void, onEnd: (how: FollowEnd) => void): (() => void) | undefined {
    if (this.closed || !this.options.breaker.allows() || this.following >= this.options.maxFollowers) return undefined
    this.following++
    const connection = this.idle.pop() ?? this.connect()
    this.busy.add(connection)
    let stopped = false
    let ended = false
    const finish = (how: FollowEnd): void => {
      if (ended) return
      ended = true
      onEnd(how)
    }
    this.run(connection, key, onItem, () => stopped)
      .then(finish, err => {
        this.options.onError?.(err as Error, `relay follow of ${key}`)
        finish('cut')
      })
      .finally(() => {
        this.following--
        this.busy.delete(connection)
        if (!this.closed && connection.status === 'ready' && this.idle.length < this.options.maxFollowers) this.idle.push(connection)
        else connection.disconnect()
      })
    return () => {
      stopped = true
      finish('cut')
    }
  }

  async close (): Promise<void> {
    this.closed = true
    // A follower's blocked read is dropped with its connection; it ends 'cut'.
    for (const connection of [...this.idle.splice(0), ...this.busy]) connection.disconnect()
  }

  /** A connection of the followers' own: a blocked XREAD must not hold up the shared one's commands. */
  private connect (): Redis | Cluster {
    const timeout = this.options.blockMs + 1000
    const { redis } = this.options
    const connection: Redis | Cluster = redis instanceof Cluster
      ? redis.duplicate(undefined, { enableOfflineQueue: true, lazyConnect: false, redisOptions: { ...redis.options.redisOptions, commandTimeout: timeout } })
      : redis.duplicate({ commandTimeout: timeout, enableOfflineQueue: true, lazyConnect: false })
    connection.on('error', err => this.options.onError?.(err, 'relay connection'))
    return connection
  }

  private async run (connection: Redis | Cluster, key: string, onItem: (item: string) => void, stopped: () => boolean): Promise<FollowEnd> {
    let last = '0-0'
    let begun = false
    // What was written so far (the whole of it, when the writer ended before this follower connected).
    const sofar = await connection.xrange(key, '-', '+') as Entry[]
    if (sofar.length > 0) {
      last = sofar[sofar.length - 1][0]
      const outcome = this.take(sofar, onItem, false)
      if (outcome !== undefined) return outcome
      begun = true
    }
    let quietSince = Date.now()
    while (!stopped()) {
      const reply = await connection.xread('COUNT', 512, 'BLOCK', this.options.blockMs, 'STREAMS', key, last) as Array<[string, Entry[]]> | null
      if (stopped()) return 'cut'
      const entries = reply?.[0]?.[1] ?? []
      if (entries.length === 0) {
        // The writer's stream expires with it: nothing for its whole life means nobody is writing.
        if (Date.now() - quietSince > this.options.ttlMs) return 'cut'
        continue
      }
      quietSince = Date.now()
      last = entries[entries.length - 1][0]
      const outcome = this.take(entries, onItem, begun)
      if (outcome !== undefined) return outcome
      begun = true
    }
    return 'cut'
  }

  /** Hands on a batch's items; an outcome when the follow is over. */
  private take (entries: Entry[], onItem: (item: string) => void, begun: boolean): FollowEnd | undefined {
    for (const [, fields] of entries) {
      const [kind, value] = fields
      if (kind === 'b') {
        // A second begin: another writer replaced this one midway. What was passed on cannot be taken back.
        if (begun) return 'cut'
        begun = true
      } else if (!begun) {
        return 'cut' // the first entries were trimmed: not followable from the first item
      } else if (kind === 'i') {
        onItem(value)
      } else if (kind === 'e') {
        return value === 'done' ? 'done' : 'failed'
      }
    }
    return undefined
  }
}
