import t from 'tap'
import { build, exampleBody, stack } from './helper.ts'

interface Case { name: string, payload?: unknown, raw?: string, contentType?: string, status: number, message: RegExp }

const profile = exampleBody.profile
const manyPercentages = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`System${i}`, 1]))

const cases: Case[] = [
  { name: 'missing profile', payload: { locale: 'en' }, status: 400, message: /body\.profile is required/ },
  { name: 'missing percentages', payload: { profile: { classification: 'unresolved' } }, status: 400, message: /body\.profile\.percentages is required/ },
  { name: 'extra top-level field', payload: { ...exampleBody, extra: 1 }, status: 400, message: /body has unknown property 'extra'/ },
  { name: 'extra profile field', payload: { ...exampleBody, profile: { ...profile, mood: 'x' } }, status: 400, message: /body\.profile has unknown property 'mood'/ },
  { name: 'wrong classification', payload: { profile: { ...profile, classification: 'major' } }, status: 400, message: /body\.profile\.classification must be one of "primary", "hybrid", "unresolved"/ },
  { name: 'primary classification without primary', payload: { profile: { classification: 'primary', percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.primary is required/ },
  { name: 'hybrid classification without hybrid', payload: { profile: { classification: 'hybrid', percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.hybrid is required/ },
  { name: 'hybrid with one name', payload: { profile: { classification: 'hybrid', hybrid: ['Vega'], percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.hybrid must NOT have fewer than 2 items/ },
  { name: 'percentage as a string', payload: { profile: { ...profile, percentages: { Arcturus: '10' } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be of type number/ },
  { name: 'percentage over 100', payload: { profile: { ...profile, percentages: { Arcturus: 101 } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be <= 100/ },
  { name: 'negative percentage', payload: { profile: { ...profile, percentages: { Arcturus: -1 } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be >= 0/ },
  { name: '1e400 (Infinity)', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1e400}}}', status: 400, message: /body\.profile\.percentages\.Vega must be/ },
  { name: 'NaN literal', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":NaN}}}', status: 400, message: /JSON/ },
  { name: '__proto__ key', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1}},"__proto__":{"polluted":true}}', status: 400, message: /forbidden "__proto__" key/ },
  { name: 'constructor as a system name', payload: { profile: { classification: 'unresolved', percentages: { constructor: 10 } } }, status: 400, message: /reserved name 'constructor'/ },
  { name: 'constructor.prototype key', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1}},"constructor":{"prototype":{"x":1}}}', status: 400, message: /forbidden "constructor\.prototype" key/ },
  { name: 'bad system name', payload: { profile: { classification: 'unresolved', percentages: { '9Lives': 10 } } }, status: 400, message: /invalid name '9Lives'/ },
  { name: '33 percentages', payload: { profile: { classification: 'unresolved', percentages: manyPercentages } }, status: 400, message: /body\.profile\.percentages must NOT have more than 32 properties/ },
  { name: 'no percentages', payload: { profile: { classification: 'unresolved', percentages: {} } }, status: 400, message: /must NOT have fewer than 1 properties/ },
  { name: 'userId too long', payload: { ...exampleBody, userId: 'x'.repeat(65) }, status: 400, message: /body\.userId must NOT have more than 64 characters/ },
  { name: 'bad locale', payload: { ...exampleBody, locale: 'english please' }, status: 400, message: /body\.locale must match pattern/ },
  { name: '17 KiB body', payload: { ...exampleBody, userId: 'x'.repeat(17 * 1024) }, status: 413, message: /too large/i },
  { name: 'non-JSON body', raw: '{"profile":', status: 400, message: /JSON/ },
  { name: 'empty JSON body', raw: '', status: 400, message: /empty/i },
  { name: 'wrong content type', raw: 'profile=1', contentType: 'application/x-www-form-urlencoded', status: 415, message: /Unsupported Media Type/ },
  { name: 'a JSON array', raw: '[1,2]', status: 400, message: /body must be of type object/ },
  // Past the schema, the domain rules (checked on the canonical profile, the key's own content):
  { name: 'primary missing from percentages', payload: { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 10 } } }, status: 400, message: /profile\.primary "Vega" is missing from profile\.percentages/ },
  { name: 'hybrid names missing from percentages', payload: { profile: { classification: 'hybrid', hybrid: ['Vega', 'Rigel'], percentages: { Vega: 10 } } }, status: 400, message: /profile\.hybrid names missing from profile\.percentages \(or under 0\.5\): Rigel/ },
  { name: 'percentages summing over 100.5', payload: { profile: { classification: 'unresolved', percentages: { Vega: 60, Rigel: 41 } } }, status: 400, message: /sum to 101 once floored to 0\.5 buckets, more than 100\.5/ }
]

t.test('every bad input gets a 4xx naming the problem, and the model is never called', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  for (const c of cases) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/narrative',
      headers: { 'content-type': c.contentType ?? 'application/json' },
      payload: c.raw ?? JSON.stringify(c.payload)
    })
    t.equal(res.statusCode, c.status, `${c.name}: status`)
    const body = res.json()
    t.match(body.message, c.message, `${c.name}: message names the problem (${body.message})`)
    t.equal(body.statusCode, c.status, `${c.name}: body statusCode`)
  }
  t.equal(s.openai.calls, 0, 'no bad input reached the model')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched')
})

t.test('a domain-rule failure is refused again on repeat, and leaves nothing in the shared store', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const bad = { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 10 } } }
  const first = await app.inject({ method: 'POST', url: '/api/narrative', payload: bad })
  t.equal(first.statusCode, 400)
  t.equal(first.json().code, 'NARR_INVALID_PROFILE')
  const again = await app.inject({ method: 'POST', url: '/api/narrative', payload: bad })
  t.equal(again.statusCode, 400)
  t.equal(again.json().message, first.json().message)
  const { Redis } = await import('ioredis')
  const redis = new Redis(s.redisUrl)
  t.teardown(() => redis.quit())
  // The instance's own fleet report (plugins/fleet.ts) is the only key it keeps under its prefix.
  const written = (await redis.keys(`*${s.prefix}*`)).filter(k => !k.startsWith(`{${s.prefix}:fleet}`))
  t.same(written, [], 'no key of any kind (no neg: entry) was written for a refusal')
  t.equal(s.openai.calls, 0)
})
