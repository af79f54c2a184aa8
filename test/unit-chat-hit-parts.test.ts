import t from 'tap'
import { SavingsLedger } from '../src/chat/savings-ledger.ts'
import { ChatBodyMemo, scopeOf } from '../routes/chat/memory-hit.ts'
import type { ApiKey } from '../src/db/api-keys-repository.ts'

const apiKey = (over: Partial<ApiKey>): ApiKey => ({ id: 'k1', name: 'n', tenant: 'team', sharing: false, rateLimit: 0, monthlyBudgetUsd: null, refresh: false, createdAt: 0, revokedAt: null, ...over })

t.test('SavingsLedger sums by key and month, and a take empties it', async t => {
  let now = Date.UTC(2026, 10, 30, 23, 58)
  const ledger = new SavingsLedger(() => now)
  ledger.note('a', 0.5)
  ledger.note('a', 0.25)
  ledger.note('b', 1)
  // The month is worked out again at most a minute later: a note after midnight, past that, is December's.
  now = Date.UTC(2026, 11, 1, 0, 0, 30)
  ledger.note('a', 2)
  const taken = ledger.take().sort((x, y) => (x.month + x.keyId).localeCompare(y.month + y.keyId))
  t.same(taken, [
    { keyId: 'a', month: '2026-11', usd: 0.75 },
    { keyId: 'b', month: '2026-11', usd: 1 },
    { keyId: 'a', month: '2026-12', usd: 2 }
  ])
  t.same(ledger.take(), [], 'taken once: nothing is written twice')
  ledger.note('a', 3)
  t.same(ledger.take(), [{ keyId: 'a', month: '2026-12', usd: 3 }], 'notes after a take start from zero')
})

t.test('scopeOf: the tenant\'s scope, or the shared one; the same string for the same key object', async t => {
  const key = apiKey({ tenant: 'team' })
  t.equal(scopeOf(key), 't-team')
  t.equal(scopeOf(key), scopeOf(key))
  t.equal(scopeOf(apiKey({ tenant: 'team', sharing: true })), 'shared')
  t.equal(scopeOf(apiKey({ tenant: 'other' })), 't-other', 'another key object, its own scope')
})

t.test('ChatBodyMemo keeps a key per body text and scope', async t => {
  const memo = new ChatBodyMemo()
  const text = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
  memo.remember('t-a', text, 'key-a')
  memo.remember('t-b', text, 'key-b')
  t.equal(memo.keyOf('t-a', text), 'key-a')
  t.equal(memo.keyOf('t-b', text), 'key-b', 'the same text in another scope is another key')
  t.equal(memo.keyOf('t-c', text), undefined, 'a scope that never sent it has none')
  t.equal(memo.keyOf('t-a', text + ' '), undefined, 'another text has none')
  memo.remember('t-a', undefined, 'x')
  memo.remember('t-a', 'x'.repeat(16 * 1024 + 1), 'long')
  t.equal(memo.keyOf('t-a', 'x'.repeat(16 * 1024 + 1)), undefined, 'a body over 16 KiB is not remembered')
  // Bounded per text: a 17th scope starts the text's scopes again.
  for (let i = 0; i < 16; i++) memo.remember(`s-${i}`, 'same', `k-${i}`)
  t.equal(memo.keyOf('s-15', 'same'), 'k-15')
  t.equal(memo.keyOf('s-0', 'same'), 'k-0')
  memo.remember('s-0', 'same', 'k-0 again')
  t.equal(memo.keyOf('s-1', 'same'), 'k-1', 'a scope already there replaces its own key only')
  memo.remember('s-16', 'same', 'k-16')
  t.equal(memo.keyOf('s-16', 'same'), 'k-16')
  t.equal(memo.keyOf('s-0', 'same'), undefined, 'past 16 scopes, the others are forgotten')
})
