import type { EntryCodec } from './codec.ts'
import { CacheCorruptionError } from './codec.ts'
import type { GuardedStore } from './guarded-store.ts'
import type { LocalTier } from './local-tier.ts'
import type { Logger } from './logger.ts'
import { describe, type Entry } from './types.ts'

export interface TieredStoreOptions {
  ttlMs: number
  /** Called with the encoded size of each value written to the store. */
  stored?: (bytes: number) => void
}

/**
 * The in-process tier in front of the store (Redis, a Cluster, or the
 * in-process store), with the adapter's codec between the engine's entries
 * and the store's bytes. Writes are newer-wins (the version is when the
 * build started). The durable tier is the engine's to ask: it is consulted
 * only on a miss of both.
 */
export class TieredStore<V> {
  private readonly access: GuardedStore
  private readonly codec: EntryCodec<V>
  readonly local: LocalTier<V> | undefined
  private readonly logger: Logger
  private readonly options: TieredStoreOptions
  private readonly onCorrupt: () => void

  constructor (access: GuardedStore, codec: EntryCodec<V>, local: LocalTier<V> | undefined, logger: Logger, options: TieredStoreOptions, onCorrupt: () => void) {
    this.access = access
    this.codec = codec
    this.local = local
    this.logger = logger
    this.options = options
    this.onCorrupt = onCorrupt
  }

  /** The decoded entry in the store; null when there is none (or it was corrupt), undefined when the store failed. */
  async read (key: string): Promise<Entry<V> | null | undefined> {
    let stored: Buffer | null
    try {
      stored = await this.access.run(s => s.get(key))
    } catch {
      return undefined
    }
    return stored === null ? null : this.decode(key, stored)
  }

  private decode (key: string, stored: Buffer): Entry<V> | null {
    try {
      return this.codec.decode(stored)
    } catch (err) {
      if (!(err instanceof CacheCorruptionError)) throw err
      this.onCorrupt()
      this.local?.delete(key)
      this.logger.warn({ key, reason: err.message }, 'corrupt cache entry deleted')
      this.access.run(s => s.del(key)).catch(() => {})
      return null
    }
  }

  /** The entry's stored form; undefined (logged) when the codec will not store it: it is then served uncached. */
  encode (key: string, entry: Entry<V>, version: number): Buffer | undefined {
    try {
      return this.codec.encode(entry, version)
    } catch (err) {
      this.logger.warn({ key, reason: describe(err) }, 'value served but not cached')
      return undefined
    }
  }

  /**
   * Writes an encoded entry unless a newer one is there; the in-process tier
   * takes it when it was written. Rejects when the store fails.
   */
  async write (key: string, entry: Entry<V>, encoded: Buffer, version: number): Promise<boolean> {
    const written = await this.access.run(s => s.setIfNewer(key, encoded, version, this.options.ttlMs))
    if (written) this.local?.set(key, entry)
    this.options.stored?.(encoded.length)
    return written
  }

  /** A plain newer-wins write of an encoded entry (a refresh, a re-population): the in-process tier is left alone. */
  async put (key: string, encoded: Buffer, version: number): Promise<boolean> {
    return await this.access.run(s => s.setIfNewer(key, encoded, version, this.options.ttlMs))
  }
}
