import t from 'tap'
import { BoundedMemo } from '../src/bounded-memo.js'
import { NarrativeService } from '../src/narrative-service.js'
import type { NarrativeEngine } from '../src/cache/narrative-engine.js'
import type { NegativeCache } from '../src/cache/negative-cache.js'
import { InvalidProfileError } from '../src/errors.js'

t.test('BoundedMemo computes once per key, keeps at most maxEntries, and evicts the least recently used', async t => {
  const computed: string[] = []
  const memo = new BoundedMemo<string, string>(2)
  const upper = (k: string): string => { computed.push(k); return k.toUpperCase() }
  t.equal(memo.get('a', upper), 'A')
  t.equal(memo.get('b', upper), 'B')
  t.equal(memo.get('a', upper), 'A', 'remembered')
  t.equal(memo.get('c', upper), 'C', 'a third key evicts the least recently used: b')
  t.equal(memo.size, 2)
  t.equal(memo.get('a', upper), 'A')
  t.equal(memo.get('b', upper), 'B')
  t.same(computed, ['a', 'b', 'c', 'b'], 'b was computed again after its eviction; a never was')
  t.throws(() => new BoundedMemo(0), /positive whole number/)
})

/** A service whose engine answers every job as a hit, noting the jobs it was given. */
function service (): { narratives: NarrativeService, jobs: Array<{ key: string, profile: unknown }>, remembered: string[] } {
  const jobs: Array<{ key: string, profile: unknown }> = []
  const remembered: string[] = []
  const engine = {
    resolve: async (job: { key: string, profile: unknown }) => {
      jobs.push(job)
      return { status: 'hit', key: job.key, narrative: { summary: 's', bullets: [] }, engine: 'template', writtenAt: Date.now(), generated: false }
    }
  } as unknown as NarrativeEngine
  const negative = { recall: () => undefined, remember: (_key: string, reason: string) => { remembered.push(reason) } } as unknown as NegativeCache
  return { narratives: new NarrativeService({ engine, negative, prefix: 'memo' }), jobs, remembered }
}

t.test('NarrativeService remembers what a body text decides: same text, same facts; other text, its own', async t => {
  const { narratives, jobs } = service()
  const body = { profile: { classification: 'primary' as const, primary: 'Vega', percentages: { Vega: 40, Sirius: 20 } }, locale: 'en' }
  const text = JSON.stringify(body)
  const first = narratives.prepare(structuredClone(body), { clientIp: 'a', bodyText: text })
  const again = narratives.prepare(structuredClone(body), { clientIp: 'b', bodyText: text })
  t.equal(again.key, first.key)
  t.equal(again.profile, first.profile, 'the remembered profile is shared, not rebuilt')
  t.not(again, first, 'each request has a job of its own (its permit is its own)')
  t.throws(() => { (again.profile as { primary?: string }).primary = 'Sirius' }, TypeError, 'a shared profile is frozen: nobody can change it for the others')

  const other = { ...body, profile: { ...body.profile, percentages: { Vega: 40, Sirius: 21 } } }
  const third = narratives.prepare(other, { clientIp: 'a', bodyText: JSON.stringify(other) })
  t.not(third.key, first.key, 'a different text has its own key')
  t.equal(third.key, narratives.keyOf(other).key, 'the same key as without the memo')
  t.equal(first.key, narratives.keyOf(body).key)

  await narratives.execute(first)
  t.equal(jobs.length, 1)
})

t.test('NarrativeService: a remembered rule violation is refused every time, and told to the negative cache', async t => {
  const { narratives, remembered } = service()
  const bad = { profile: { classification: 'primary' as const, primary: 'Arcturus', percentages: { Vega: 40 } } }
  const text = JSON.stringify(bad)
  for (let i = 0; i < 2; i++) {
    t.throws(() => narratives.prepare(structuredClone(bad), { clientIp: 'a', bodyText: text }), InvalidProfileError)
  }
  t.equal(remembered.length, 2, 'both refusals reached the negative cache')
  t.match(remembered[0], /Arcturus/)
})
