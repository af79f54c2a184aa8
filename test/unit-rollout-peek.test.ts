import t from 'tap'
import { Rollout, type RolloutStore } from '../src/narrative/rollout.ts'
import { PromptSelection } from '../src/narrative/versions.ts'
import { MemoryTokenBucket } from '../src/rollout/token-bucket.ts'
import { silentLogger } from '../src/swr/logger.ts'
import { promptVersion, type PromptVersion } from '../src/domain/prompt.ts'
import type { SwrEngine } from '../src/swr/engine.ts'
import type { Entry } from '../src/swr/types.ts'
import type { NarrativeBuilds } from '../src/narrative/adapter.ts'
import type { NarrativeValue } from '../src/narrative/codec.ts'
import type { NormalizedProfile } from '../src/domain/profile.ts'

const prompt = (version: string): PromptVersion => {
  const found = promptVersion(version)
  if (found === undefined) throw new Error(`no prompt ${version}`)
  return found
}

const profile: NormalizedProfile = { classification: 'primary', primary: 'Vega', percentages: { Vega: 60 } }
const written: NarrativeValue = { version: 'narrative@1.0.0', engine: 'model-a', prompt_hash: prompt('v2').hash, prompt_version: 'v2', profile, locale: 'en', narrative: { summary: 'Written by model A.', bullets: [] } }

/**
 * A rollout from model A to model B over a store whose reads answer after
 * `readMs` (or never): model A's entry is there, model B's is not.
 */
async function rolloutOver (readMs: number | 'never'): Promise<{ rollout: Rollout, job: { key: string, profile: typeof profile, locale: string, prompt: PromptVersion } }> {
  const selection = new PromptSelection({ prefix: 'p', model: 'model-b', active: prompt('v2') })
  const earlierKey = selection.keyFor(profile, 'en', prompt('v2'), 'model-a')
  const entry: Entry<NarrativeValue> = { value: written, createdAt: 0, refreshedAt: 0, staleAfter: Number.MAX_SAFE_INTEGER }
  const engine = {
    peek: async (key: string) => await new Promise<Entry<NarrativeValue> | null>(resolve => {
      if (readMs !== 'never') setTimeout(() => { resolve(key === earlierKey ? entry : null) }, readMs)
    })
  } as unknown as SwrEngine<NarrativeValue>
  const store: RolloutStore = {
    claim: async () => true,
    unclaim: async () => {},
    paused: async () => false,
    setPaused: async () => {},
    markWriting: async () => {},
    writers: async () => [{ version: 'v2', model: 'model-a' }]
  }
  const rollout = new Rollout({ engine, builds: {} as unknown as NarrativeBuilds, selection, bucket: new MemoryTokenBucket(60), store, logger: silentLogger, options: { peekBudgetMs: 300 } })
  await rollout.refreshWriters()
  return { rollout, job: { key: selection.keyFor(profile, 'en', prompt('v2')), profile, locale: 'en', prompt: prompt('v2') } }
}

const busyFor = (ms: number): void => {
  const end = performance.now() + ms
  while (performance.now() < end) { /* the process stalls: no timer, no socket read */ }
}

t.test('the look for an earlier entry: a stalled process does not spend the store\'s budget', async t => {
  const { rollout, job } = await rolloutOver(100)
  const answer = rollout.earlierAnswer(job)
  // The process stalls past the budget while the store's answer would have come in time.
  busyFor(600)
  t.match(await answer, { status: 'stale', value: { engine: 'model-a' } }, 'answered from model A\'s entry, not sent on to the model')
  t.equal(rollout.counters.earlierAnswers, 1)
  t.equal(rollout.queued, 1, 'the key queued for model B')
})

t.test('the look for an earlier entry: a store that does not answer costs one budget, then the usual path', async t => {
  const { rollout, job } = await rolloutOver('never')
  const started = performance.now()
  t.equal(await rollout.earlierAnswer(job), undefined)
  const took = performance.now() - started
  t.ok(took >= 290, `given up after the budget (${took.toFixed(0)} ms)`)
})

t.test('the look for an earlier entry reads the key\'s own entry and the earlier writers\' together: one store round trip, not one each', async t => {
  // Each read takes 200 ms and the budget is 300 ms: one after the other (400 ms) the
  // look would give up and send the request on to the model; together, it answers.
  const { rollout, job } = await rolloutOver(200)
  t.match(await rollout.earlierAnswer(job), { status: 'stale', value: { engine: 'model-a' } }, 'answered from model A\'s entry, within the budget')
  t.equal(rollout.counters.earlierAnswers, 1)
})
