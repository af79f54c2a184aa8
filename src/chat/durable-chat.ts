import type { DurableRepository } from '../swr/durable-tier.ts'
import type { ChatEntriesRepository } from '../db/chat-entries-repository.ts'
import type { ChatValue } from './codec.ts'

/** The durable tier's view of chat_entries: a row that is not a chat entry counts as missing (a newer write replaces it). */
export function durableChat (repository: ChatEntriesRepository): DurableRepository<ChatValue> {
  return {
    async get (key) {
      const row = await repository.get(key)
      const e = row?.entry as { chunks?: unknown, offsets?: unknown, usd?: unknown, createdAt?: unknown, refreshedAt?: unknown, staleAfter?: unknown } | undefined
      if (row === null || e === undefined || !Array.isArray(e.chunks) || !e.chunks.every(c => typeof c === 'string') ||
        typeof e.createdAt !== 'number' || typeof e.refreshedAt !== 'number' || typeof e.staleAfter !== 'number') return null
      const offsets = Array.isArray(e.offsets) && e.offsets.every(o => typeof o === 'number') ? e.offsets as number[] : undefined
      return { entry: { value: { chunks: e.chunks, offsets, usd: typeof e.usd === 'number' ? e.usd : undefined }, createdAt: e.createdAt, refreshedAt: e.refreshedAt, staleAfter: e.staleAfter }, version: row.version }
    },
    async write (key, entry, version) {
      return await repository.write(key, { ...entry.value, createdAt: entry.createdAt, refreshedAt: entry.refreshedAt, staleAfter: entry.staleAfter }, version)
    }
  }
}
