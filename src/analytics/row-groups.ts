import type { AnalyticsEvent } from './event.ts'

/**
 * The queued rows identical events are added to, by (key, event, user).
 * Nested maps rather than one map keyed by a joined string: the strings an
 * event carries are the same string objects from one request to the next
 * (a remembered body's key and user id, an event name), whose hashes V8
 * keeps, whereas a joined key is a new string to build and hash on every
 * event, and this runs on every hit (bench/RESULTS.md, issue 16).
 */
export class RowGroups {
  readonly #byKey = new Map<string, Map<string, Map<string, AnalyticsEvent>>>()

  /** Whether events like this one are grouped at all: model calls, with their durations and tokens, never are. */
  static groups (e: AnalyticsEvent): boolean {
    return !(e.event === 'generation' || e.durationMs != null || e.promptTokens != null || e.completionTokens != null)
  }

  get (e: AnalyticsEvent): AnalyticsEvent | undefined {
    return this.#byKey.get(e.key)?.get(e.event)?.get(e.userId ?? '')
  }

  set (e: AnalyticsEvent, row: AnalyticsEvent): void {
    let byEvent = this.#byKey.get(e.key)
    if (byEvent === undefined) this.#byKey.set(e.key, byEvent = new Map())
    let byUser = byEvent.get(e.event)
    if (byUser === undefined) byEvent.set(e.event, byUser = new Map())
    byUser.set(e.userId ?? '', row)
  }

  /** Forgets `row` if it is still the row of its group. */
  forget (row: AnalyticsEvent): void {
    const byEvent = this.#byKey.get(row.key)
    const byUser = byEvent?.get(row.event)
    if (byEvent === undefined || byUser === undefined || byUser.get(row.userId ?? '') !== row) return
    byUser.delete(row.userId ?? '')
    if (byUser.size === 0) byEvent.delete(row.event)
    if (byEvent.size === 0) this.#byKey.delete(row.key)
  }

  clear (): void {
    this.#byKey.clear()
  }
}
