import t from 'tap'
import { NarrativeService } from '../src/narrative/service.ts'
import type { SwrEngine } from '../src/swr/engine.ts'
import type { NarrativeValue } from '../src/narrative/codec.ts'
import type { NarrativeBuilds } from '../src/narrative/adapter.ts'
import { InvalidProfileError } from '../src/errors.ts'
import type { AnalyticsEvent } from '../src/analytics/event.ts'

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
