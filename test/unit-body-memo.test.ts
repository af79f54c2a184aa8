import t from 'tap'
import { LruMap } from '../src/lru-map.ts'
import { NarrativeService } from '../src/narrative/service.ts'
import type { SwrEngine } from '../src/swr/engine.ts'
import type { NarrativeValue } from '../src/narrative/codec.ts'
import type { NarrativeBuilds } from '../src/narrative/adapter.ts'
import { InvalidProfileError } from '../src/errors.ts'
import type { AnalyticsEvent } from '../src/analytics/event.ts'

t.test('LruMap keeps at most maxEntries and forgets the least recently used; peek does not make an entry recent', async t => {
  const map = new LruMap<string, number>(2)
  map.set('a', 1)
  map.set('b', 2)
  t.equal(map.get('a'), 1, 'a is now the most recently used')
  map.set('c', 3)
  t.same([...map.keys()], ['a', 'c'], 'a third key pushed out b, the least recently used')
  t.equal(map.peek('a'), 1)
  map.set('d', 4)
  t.same([...map.keys()], ['c', 'd'], 'peeking at a did not keep it')
  map.set('c', 30)
  t.same([...map.keys()], ['d', 'c'], 'setting an existing key makes it recent without evicting')
  t.equal(map.size, 2)
  t.equal(map.delete('d'), true)
  t.equal(map.delete('d'), false)
  t.equal(map.get('missing'), undefined)
  t.throws(() => new LruMap(0), /positive whole number/)
})

t.test('LruMap in a larger map: a key used once every maxEntries / 2 insertions is never evicted; unused keys are, in order; never above maxEntries', async t => {
  const map = new LruMap<string, number>(10)
  map.set('hot', 0)
  for (let i = 1; i <= 200; i++) {
    map.set(`k${i}`, i)
    t.ok(map.size <= 10, 'never above maxEntries')
    if (i % 5 === 0) t.equal(map.get('hot'), 0, `hot is still there after ${i} insertions`)
  }
  t.same([...map.keys()].filter(k => k !== 'hot'), ['k192', 'k193', 'k194', 'k195', 'k196', 'k197', 'k198', 'k199', 'k200'].slice(-9), 'the others are the most recent, oldest first')
  // Unused for maxEntries insertions, a key goes, even one used often before.
  for (let i = 201; i <= 210; i++) map.set(`k${i}`, i)
  t.equal(map.peek('hot'), undefined, 'hot, unused for 10 insertions, was evicted')
  // Used in the older half, a key is moved to the end: it outlives the keys inserted before the use.
  const small = new LruMap<string, number>(4)
  for (const k of ['a', 'b', 'c', 'd']) small.set(k, 0)
  small.get('a')
  small.set('e', 0)
  small.set('f', 0)
  t.same([...small.keys()], ['d', 'a', 'e', 'f'], 'a, used after 3 later insertions, outlived b and c')
})

/** A service whose engine answers every job as a hit, noting the jobs it was given. */
function service (): { narratives: NarrativeService, jobs: Array<{ key: string, profile: unknown }>, recorded: AnalyticsEvent[] } {
  const jobs: Array<{ key: string, profile: unknown }> = []
  const recorded: AnalyticsEvent[] = []
  const builds = { specFor: (job: { key: string, profile: unknown }) => job } as unknown as NarrativeBuilds
  const engine = {
    getOrBuild: async (key: string, job: { key: string, profile: unknown }) => {
      jobs.push(job)
      return { status: 'hit', key, value: { narrative: { summary: 's', bullets: [] }, engine: 'template' }, writtenAt: Date.now(), built: false }
    }
  } as unknown as SwrEngine<NarrativeValue>
  const recorder = { record: (event: AnalyticsEvent) => { recorded.push(event) } }
  return { narratives: new NarrativeService({ engine, builds, recorder, prefix: 'memo' }), jobs, recorded }
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

t.test('NarrativeService: a remembered rule violation is refused every time, recorded under one key with nothing of the profile', async t => {
  const { narratives, recorded } = service()
  const bad = { profile: { classification: 'primary' as const, primary: 'Arcturus', percentages: { Vega: 40 } }, userId: 'u-1' }
  const text = JSON.stringify(bad)
  for (let i = 0; i < 2; i++) {
    t.throws(() => narratives.prepare(structuredClone(bad), { clientIp: 'a', bodyText: text }), InvalidProfileError)
  }
  t.equal(recorded.length, 2, 'both refusals counted')
  t.same(recorded.map(e => [e.event, e.key, e.systems, e.userId, e.profile]), [['error', 'memo:refused', [], null, undefined], ['error', 'memo:refused', [], null, undefined]])
})
