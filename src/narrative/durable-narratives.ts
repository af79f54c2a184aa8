import type { DurableRepository } from '../swr/durable-tier.ts'
import type { Entry } from '../swr/types.ts'
import type { NarrativesRepository } from '../db/narratives-repository.ts'
import { fromCached, toCached, type NarrativeValue } from './codec.ts'

/**
 * The durable tier's view of the narratives table: rows of today's engine
 * version only (an older one is rebuilt, as the codec treats it), and each
 * write keeps the profile and locale in their own columns for pre-warm.
 */
export function durableNarratives (repository: NarrativesRepository, engineVersion: string, ttlSeconds: number): DurableRepository<NarrativeValue> {
  return {
    async get (key) {
      const row = await repository.get(key)
      if (row === null || row.entry.version !== engineVersion) return null
      return { entry: fromCached(row.entry), version: row.version }
    },
    async write (key: string, entry: Entry<NarrativeValue>, version: number) {
      return await repository.write(key, toCached(entry, ttlSeconds), version, entry.value.profile, entry.value.locale ?? null)
    }
  }
}
