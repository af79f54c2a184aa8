import { monthOf } from '../db/api-keys-repository.ts'

/** What one API key saved in one calendar month (UTC), in dollars. */
export interface Saving { keyId: string, month: string, usd: number }

/** How long a month's name is used before it is worked out again (so a new month starts within this). */
const MONTH_CHECK_MS = 60_000

/**
 * The dollars each API key saved (answers from the cache, at what their
 * entry's call cost), summed in memory by calendar month between writes to
 * the database, so a hit costs no database statement. It runs on every chat
 * hit: a note is one lookup by the key's id, in the current month's sums,
 * with no string built (the id is the same string every time, its hash kept).
 */
export class SavingsLedger {
  readonly #clock: () => number
  #byMonth = new Map<string, Map<string, number>>()
  #month: { name: string, until: number, sums: Map<string, number> } | undefined

  constructor (clock: () => number = Date.now) {
    this.#clock = clock
  }

  note (keyId: string, usd: number): void {
    const now = this.#clock()
    let month = this.#month
    if (month === undefined || now >= month.until) month = this.#enter(monthOf(now), now)
    month.sums.set(keyId, (month.sums.get(keyId) ?? 0) + usd)
  }

  /** Everything summed since the last take, and an empty ledger from now on. */
  take (): Saving[] {
    const taken: Saving[] = []
    for (const [month, sums] of this.#byMonth) for (const [keyId, usd] of sums) taken.push({ keyId, month, usd })
    this.#byMonth = new Map()
    this.#month = undefined
    return taken
  }

  #enter (name: string, now: number): { name: string, until: number, sums: Map<string, number> } {
    let sums = this.#byMonth.get(name)
    if (sums === undefined) {
      sums = new Map()
      this.#byMonth.set(name, sums)
    }
    this.#month = { name, until: now + MONTH_CHECK_MS, sums }
    return this.#month
  }
}
