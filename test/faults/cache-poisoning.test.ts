// Cache poisoning: what one client sends must never change what another
// client with a valid request gets. The attack found: the percentage-sum rule
// was checked on the raw values, while the refusal was remembered (in the
// process and under `neg:` in Redis) by the key of the 0.5 buckets. So
// {"Vega":60.4,"Sirius":40.4} (raw sum 100.8, refused) made the valid
// {"Vega":60,"Sirius":40} (same key) answer 400 to everyone, as JSON and as
// SSE, for 5 to 15 minutes, renewed by every repeat. Now every rule is checked
// on the normalized profile (what the key is made of), so two requests that
// share a key are both valid or both refused, and refusals are remembered by
// nobody but the process that refused, by exact body text.
import t from 'tap'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { build, stack } from '../helper.ts'
import { postSse } from '../support/sse-client.ts'

const valid = { profile: { classification: 'unresolved', percentages: { Vega: 60, Sirius: 40 } } }
const hostile = { profile: { classification: 'unresolved', percentages: { Vega: 60.4, Sirius: 40.4 } } }

function urlOf (app: FastifyInstance): string {
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}/api/narrative`
}

t.test('a request whose raw shares sum over 100.5 cannot make a valid profile of the same key answer 400 (JSON and SSE)', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const post = (payload: unknown, remoteAddress: string) => app.inject({ method: 'POST', url: '/api/narrative', payload: payload as object, remoteAddress })

  // Already cached, then attacked.
  const first = await post(valid, '10.0.0.1')
  t.equal(first.statusCode, 200, 'the valid profile is served')
  const key = first.json().cache.key
  for (let i = 0; i < 5; i++) {
    const attack = await post(hostile, '10.6.6.6')
    // Same key, same validity: the attacker gets the very entry, not a refusal that others inherit.
    t.equal(attack.statusCode, 200, `attack ${i}: answered like the valid profile of its key (${attack.json().message ?? attack.json().cache?.status})`)
    t.equal(attack.json().cache?.key, key, `attack ${i}: the same key`)
  }
  const after = await post(valid, '10.0.0.2')
  t.equal(after.statusCode, 200, `another client is still served (${after.body.slice(0, 120)})`)
  t.equal(after.json().cache?.status, 'hit')
  const sse = await postSse(urlOf(app), valid)
  t.equal(sse.status, 200, 'and still served as Server-Sent Events')
  t.equal(sse.events.at(-1)?.event, 'done')

  // Not yet cached: the attack comes first.
  const freshValid = { profile: { classification: 'unresolved', percentages: { Vega: 70, Rigel: 30 } } }
  const freshHostile = { profile: { classification: 'unresolved', percentages: { Vega: 70.45, Rigel: 30.45 } } }
  await post(freshHostile, '10.6.6.6')
  const sseFirst = await postSse(urlOf(app), freshValid)
  t.equal(sseFirst.status, 200, 'a valid profile attacked before it was ever cached streams (SSE)')
  const jsonAfter = await post(freshValid, '10.0.0.3')
  t.equal(jsonAfter.statusCode, 200, 'and answers as JSON')
  t.equal(s.openai.calls, 2, 'one model call per key, attacks included')
})

t.test('property: two requests that share a key are both served or both refused, with the same reason, whatever came first', async t => {
  // The in-process store and the template narrator: the whole request path, nothing slow. No generation
  // limit: 300 pairs make up to 300 generations from one address in seconds, and a 429 is not what this is about.
  const app = await build(t, { env: { LOCAL_CACHE_MAX_ENTRIES: '1000', GENERATION_RATE_LIMIT: '0' } })
  const names = ['Vega', 'Sirius', 'Rigel', 'Arcturus', 'Pleiades']
  // A bucket (0 to 100 by 0.5) and two offsets inside it: two raw values that floor to the same bucket.
  const share = fc.record({ b: fc.integer({ min: 0, max: 200 }), x: fc.double({ min: 0, max: 0.499, noNaN: true }), y: fc.double({ min: 0, max: 0.499, noNaN: true }) })
    .map(({ b, x, y }) => b === 200 ? [100, 100] : [b / 2 + x, b / 2 + y])
  // Shares anywhere, and shares whose buckets add up to 99.5 to 100.5: the raw totals then fall on both sides of 100.5.
  const anywhere = fc.dictionary(fc.constantFrom(...names), share, { minKeys: 1, maxKeys: 5 })
  const nearFull = fc.tuple(fc.shuffledSubarray(names, { minLength: 2, maxLength: 5 }), fc.integer({ min: 199, max: 201 }), fc.array(fc.double({ min: 0, max: 0.499, noNaN: true }), { minLength: 10, maxLength: 10 }))
    .map(([picked, halves, offsets]) => {
      const out: Record<string, number[]> = {}
      let left = halves
      picked.forEach((name, i) => {
        const mine = i === picked.length - 1 ? left : Math.floor(left / (picked.length - i))
        left -= mine
        const base = mine / 2
        const [x, y] = [offsets[2 * i], offsets[2 * i + 1]]
        out[name] = base >= 100 ? [100, 100] : [base + x, base + y]
      })
      return out
    })
  const profile = fc.record({
    classification: fc.constantFrom('primary', 'hybrid', 'unresolved'),
    shares: fc.oneof(anywhere, nearFull),
    pick: fc.shuffledSubarray(names, { minLength: 2, maxLength: 4 })
  })
  const outcome = async (payload: object, remoteAddress: string): Promise<string> => {
    const res = await app.inject({ method: 'POST', url: '/api/narrative', payload, remoteAddress })
    const body = res.json()
    return `${res.statusCode} ${body.cache?.key ?? body.message}`
  }
  await fc.assert(fc.asyncProperty(profile, fc.boolean(), async ({ classification, shares, pick }, attackerFirst) => {
    const side = (i: 0 | 1): object => ({
      profile: {
        classification,
        ...(classification === 'primary' ? { primary: pick[0] } : {}),
        ...(classification === 'hybrid' ? { hybrid: pick } : {}),
        percentages: Object.fromEntries(Object.entries(shares).map(([n, v]) => [n, v[i]]))
      }
    })
    const [a, b] = attackerFirst ? [side(1), side(0)] : [side(0), side(1)]
    const seen = [await outcome(a, '10.6.6.6'), await outcome(b, '10.0.0.1'), await outcome(a, '10.6.6.6'), await outcome(b, '10.0.0.1')]
    // One outcome per bucketed profile, whichever was sent first and however often.
    return seen.every(o => o === seen[0])
  }), { numRuns: 300 })
  t.pass('held for every generated pair')
})
