import { randomUUID } from 'node:crypto'

/** What the list needs of a store: small values with a TTL, and token-checked locks (the cache store has both). */
export interface SharedNamesStore {
  get: (key: string) => Promise<Buffer | null>
  set: (key: string, value: string, ttlMs: number) => Promise<void>
  acquireLock: (key: string, token: string, ttlMs: number) => Promise<boolean>
  releaseLock: (key: string, token: string) => Promise<boolean>
}

export interface SharedName {
  name: string
  /** When it was last added (ms since the epoch). */
  at: number
  /** When it is dropped, unless added again. */
  until: number
}

export interface SharedNamesOptions {
  /** At most this many names are kept: the ones added longest ago go first. */
  maxNames: number
  /** Attempts at the lock before add() gives up (the caller adds again later). */
  attempts: number
  clock: () => number
}

const DEFAULTS: SharedNamesOptions = { maxNames: 100, attempts: 5, clock: Date.now }
const LOCK_TTL_MS = 5000

// Not unref'd: a wait of a few ms between attempts, that an add() in progress needs to finish.
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/**
 * A small list of names the whole fleet shares, each kept until its own
 * expiry: one JSON value in the store. Adding is rare and reading frequent,
 * so an addition reads, changes and writes the value under a lock (two
 * instances adding at once must not lose one another's name); a read is one
 * GET. A value that cannot be read as such a list counts as empty.
 */
export class SharedNames {
  private readonly store: SharedNamesStore
  private readonly key: string
  private readonly options: SharedNamesOptions

  constructor (store: SharedNamesStore, key: string, options: Partial<SharedNamesOptions> = {}) {
    this.store = store
    this.key = key
    this.options = { ...DEFAULTS, ...options }
    if (!(this.options.maxNames >= 1)) throw new Error('SharedNames: maxNames must be at least 1')
    if (!(this.options.attempts >= 1)) throw new Error('SharedNames: attempts must be at least 1')
  }

  /** Adds a name (or renews it) for `ttlMs`. Rejects when the store fails or the lock stays taken. */
  async add (name: string, ttlMs: number): Promise<void> {
    const lock = `${this.key}:lock`
    const token = randomUUID()
    for (let attempt = 1; ; attempt++) {
      if (await this.store.acquireLock(lock, token, LOCK_TTL_MS)) break
      if (attempt >= this.options.attempts) throw new Error(`SharedNames: ${this.key} stayed locked`)
      await sleep(20 * attempt + Math.random() * 20)
    }
    try {
      const now = this.options.clock()
      const names = (await this.list()).filter(n => n.name !== name)
      names.unshift({ name, at: now, until: now + ttlMs })
      const kept = names.slice(0, this.options.maxNames)
      const longest = Math.max(...kept.map(n => n.until)) - now
      await this.store.set(this.key, JSON.stringify(kept), longest)
    } finally {
      await this.store.releaseLock(lock, token).catch(() => {})
    }
  }

  /** The names not yet expired, the most recently added first. */
  async list (): Promise<SharedName[]> {
    const stored = await this.store.get(this.key)
    if (stored === null) return []
    let parsed: unknown
    try {
      parsed = JSON.parse(stored.toString('utf8'))
    } catch {
      return []
    }
    if (!Array.isArray(parsed)) return []
    const now = this.options.clock()
    return parsed
      .filter((n): n is SharedName => typeof n === 'object' && n !== null && typeof n.name === 'string' && typeof n.at === 'number' && typeof n.until === 'number')
      .filter(n => n.until > now)
      .sort((a, b) => b.at - a.at)
  }
}
