import t from 'tap'
import { MemoryStore } from '../src/swr/memory-store.ts'
import { SharedNames } from '../src/rollout/shared-names.ts'
import { parseWriterName, PromptSelection, writerName } from '../src/narrative/versions.ts'
import { promptVersion, type PromptVersion } from '../src/domain/prompt.ts'

const prompt = (version: string): PromptVersion => {
  const found = promptVersion(version)
  if (found === undefined) throw new Error(`no prompt ${version}`)
  return found
}

t.test('SharedNames: additions at once keep every name; each expires on its own; the most recent first', async t => {
  let now = 1_000_000
  const store = new MemoryStore({ maxBytes: 1 << 20, clock: () => now })
  const names = new SharedNames(store, 'rollout:t:writers', { clock: () => now, attempts: 50 })
  // Ten instances adding at the same moment: the lock keeps any from overwriting another's.
  await Promise.all(Array.from({ length: 10 }, async (_, i) => { await names.add(`v2 model-${i}`, 60_000) }))
  t.equal((await names.list()).length, 10, 'none lost')
  now += 1000
  await names.add('v2 model-3', 120_000)
  t.equal((await names.list())[0].name, 'v2 model-3', 'added again: the most recent')
  now += 60_000
  t.same((await names.list()).map(n => n.name), ['v2 model-3'], 'the others expired, the renewed one stays')
  await store.set('rollout:t:writers', 'not json', 60_000)
  t.same(await names.list(), [], 'an unreadable value counts as empty')
  const few = new SharedNames(store, 'rollout:t:few', { clock: () => now, maxNames: 2 })
  for (const n of ['a', 'b', 'c']) {
    now += 1
    await few.add(n, 60_000)
  }
  t.same((await few.list()).map(n => n.name), ['c', 'b'], 'at most maxNames, the oldest dropped')
})

t.test('SharedNames: a lock that stays taken makes add() reject (the caller adds again later)', async t => {
  const store = new MemoryStore({ maxBytes: 1 << 20 })
  await store.acquireLock('k:lock', 'someone', 60_000)
  await t.rejects(new SharedNames(store, 'k', { attempts: 2 }).add('x', 1000), /stayed locked/)
})

t.test('writer names read back; earlier writers in the order to look', async t => {
  t.same(parseWriterName(writerName({ version: 'v2', model: 'gpt-4o mini' })), { version: 'v2', model: 'gpt-4o mini' })
  t.equal(parseWriterName('v2'), undefined)
  t.equal(parseWriterName(' gpt'), undefined)

  const selection = new PromptSelection({ prefix: 'p', model: 'model-b', active: prompt('v2') })
  const order = (written: Array<{ version: string, model: string }>): string[] => selection.earlierWriters(prompt('v2'), written).map(w => `${w.prompt.version} ${w.model}`)
  // Listed most recent first, as the shared list gives them.
  t.same(order([{ version: 'v1', model: 'model-b' }, { version: 'v2', model: 'model-z' }, { version: 'v1', model: 'model-a' }, { version: 'v2', model: 'model-a' }, { version: 'v2', model: 'model-b' }]),
    ['v2 model-z', 'v2 model-a', 'v1 model-b', 'v1 model-a'],
    'the same version by other models first (most recent first), then older versions, today\'s model first; never today\'s own writer')
  t.same(order([{ version: 'v9', model: 'model-a' }]), [], 'a version with no prompt file here is skipped')
  t.not(selection.keyFor({ classification: 'primary', percentages: { Vega: 50 } }, 'en', prompt('v2'), 'model-a'), selection.keyFor({ classification: 'primary', percentages: { Vega: 50 } }, 'en', prompt('v2')), 'the model is part of the key')

  const canary = new PromptSelection({ prefix: 'p', model: 'model-b', active: prompt('v1'), canary: { prompt: prompt('v2'), percent: 10 } })
  t.same(canary.earlierWriters(prompt('v2'), []).map(w => `${w.prompt.version} ${w.model}`), ['v1 model-b'], 'a canary key also looks at the active version\'s entry')
})
