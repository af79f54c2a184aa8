import t from 'tap'
import { connect } from 'node:net'
import { gzipSync } from 'node:zlib'
import { mintAdminToken } from '../src/admin/token.ts'
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
  // An absent classification is named as such, not as the primary or hybrid it would need.
  { name: 'no classification', payload: { profile: { percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.classification is required/ },
  { name: 'no classification, with primary', payload: { profile: { primary: 'Vega', percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.classification is required/ },
  { name: 'hybrid classification without hybrid', payload: { profile: { classification: 'hybrid', percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.hybrid is required/ },
  { name: 'hybrid with one name', payload: { profile: { classification: 'hybrid', hybrid: ['Vega'], percentages: { Vega: 10 } } }, status: 400, message: /body\.profile\.hybrid must NOT have fewer than 2 items/ },
  { name: 'percentage as a string', payload: { profile: { ...profile, percentages: { Arcturus: '10' } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be of type number/ },
  { name: 'percentage over 100', payload: { profile: { ...profile, percentages: { Arcturus: 101 } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be <= 100/ },
  { name: 'negative percentage', payload: { profile: { ...profile, percentages: { Arcturus: -1 } } }, status: 400, message: /body\.profile\.percentages\.Arcturus must be >= 0/ },
  { name: '1e400 (Infinity)', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1e400}}}', status: 400, message: /body\.profile\.percentages\.Vega must be/ },
  { name: 'NaN literal', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":NaN}}}', status: 400, message: /JSON/ },
  { name: '__proto__ key', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1}},"__proto__":{"polluted":true}}', status: 400, message: /forbidden "__proto__" key/ },
  { name: 'a key named twice', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":40,"Vega":10}}}', status: 400, message: /names "Vega" twice in body\.profile\.percentages/ },
  { name: 'a key named twice, once escaped', raw: '{"locale":"en","profile":{"classification":"unresolved","percentages":{"Vega":40}},"loc\\u0061le":"fr"}', status: 400, message: /names "locale" twice in body:/ },
  { name: 'constructor as a system name', payload: { profile: { classification: 'unresolved', percentages: { constructor: 10 } } }, status: 400, message: /reserved name 'constructor'/ },
  { name: 'constructor.prototype key', raw: '{"profile":{"classification":"unresolved","percentages":{"Vega":1}},"constructor":{"prototype":{"x":1}}}', status: 400, message: /forbidden "constructor\.prototype" key/ },
  { name: 'bad system name', payload: { profile: { classification: 'unresolved', percentages: { '9Lives': 10 } } }, status: 400, message: /invalid name '9Lives'/ },
  { name: '33 percentages', payload: { profile: { classification: 'unresolved', percentages: manyPercentages } }, status: 400, message: /body\.profile\.percentages must NOT have more than 32 properties/ },
  { name: 'no percentages', payload: { profile: { classification: 'unresolved', percentages: {} } }, status: 400, message: /must NOT have fewer than 1 properties/ },
  { name: 'userId too long', payload: { ...exampleBody, userId: 'x'.repeat(65) }, status: 400, message: /body\.userId must NOT have more than 64 characters/ },
  { name: 'bad locale', payload: { ...exampleBody, locale: 'english please' }, status: 400, message: /body\.locale must match pattern/ },
  { name: '17 KiB body', payload: { ...exampleBody, userId: 'x'.repeat(17 * 1024) }, status: 413, message: /too large/i },
  { name: 'non-JSON body', raw: '{"profile":', status: 400, message: /JSON/ },
  { name: 'a syntax error, said where', raw: '{"profile": }', status: 400, message: /not valid JSON: Unexpected token '}', "{"profile": }"/ },
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

/** Raw bytes on a real connection (what inject cannot send): the answer's status line, headers and body. */
async function rawRequest (port: number, request: string | Buffer): Promise<{ status: number, headers: string, body: string }> {
  const socket = connect(port, '127.0.0.1')
  socket.end(request)
  let text = ''
  for await (const piece of socket) text += (piece as Buffer).toString('utf8')
  const [head, ...rest] = text.split('\r\n\r\n')
  return { status: Number(head.split(' ')[1]), headers: head, body: rest.join('\r\n\r\n') }
}

t.test('bytes that are not UTF-8 are refused, never read as U+FFFD; so is a body in a coding the server does not undo', async t => {
  const s = await stack(t)
  const SECRET = 'bad-input-secret-that-is-long-enough-0123'
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET }, listen: true })
  const port = (app.server.address() as { port: number }).port
  const latin1 = Buffer.concat([Buffer.from(JSON.stringify({ ...exampleBody, userId: 'caf' }).slice(0, -2)), Buffer.from([0xe9]), Buffer.from('"}')])
  const post = async (payload: Buffer | string, headers: Record<string, string> = {}, url = '/api/narrative') =>
    await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload })
  // Read whole by the hit path's hook (small, with a Content-Length), and by the parser alone (over the memo's size).
  const small = await post(latin1)
  t.equal(small.statusCode, 400)
  t.match(small.json().message, /not valid UTF-8/)
  // An encoded lone surrogate (ED A0 80) is not UTF-8 either.
  const surrogate = Buffer.concat([Buffer.from('{"profile":{"classification":"unresolved","percentages":{"Vega":1}},"userId":"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])
  t.match((await post(surrogate)).json().message, /not valid UTF-8/)
  // Chunked (no Content-Length): Fastify's parser alone.
  const chunked = await rawRequest(port, Buffer.concat([
    Buffer.from('POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n'),
    Buffer.from(latin1.length.toString(16) + '\r\n'), latin1, Buffer.from('\r\n0\r\n\r\n')
  ]))
  t.equal(chunked.status, 400)
  t.match(JSON.parse(chunked.body).message, /not valid UTF-8/)
  const chunkedSyntax = await rawRequest(port, 'POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\n{"profile": }\r\n0\r\n\r\n')
  t.match(JSON.parse(chunkedSyntax.body).message, /not valid JSON: Unexpected token '}', "{"profile": }"/, 'a chunked body\'s syntax error says where too')
  // Other routes' bodies go through the same parser.
  const admin = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
  const keyName = Buffer.concat([Buffer.from('{"name":"caf'), Buffer.from([0xe9]), Buffer.from('"}')])
  t.match((await post(keyName, admin, '/api/keys')).json().message, /not valid UTF-8/)
  // Escaped, a lone surrogate or a C1 control is valid JSON, but not a name a key can have.
  for (const name of ['a\\ud800b', 'a\\u0085b']) {
    const res = await post(`{"name":"${name}"}`, admin, '/api/keys')
    t.equal(res.statusCode, 400, `key name ${name}`)
    t.match(res.json().message, /body\.name must not contain control characters .* or lone surrogates/)
  }
  // Codings: a real gzip body, and a plain one labelled as one, are both refused naming the header.
  const gzipped = await post(gzipSync(JSON.stringify(exampleBody)), { 'content-encoding': 'gzip' })
  t.equal(gzipped.statusCode, 415)
  t.match(gzipped.json().message, /Content-Encoding gzip is not supported/)
  const mislabelled = await post(JSON.stringify(exampleBody), { 'content-encoding': 'br' })
  t.equal(mislabelled.statusCode, 415)
  t.match(mislabelled.json().message, /Content-Encoding br is not supported/)
  t.equal((await post(JSON.stringify(exampleBody), { 'content-encoding': 'identity' })).statusCode, 200, 'identity is the body as it is')
  t.equal(s.openai.calls, 1, 'only the identity request reached the model')
})

t.test('a route that takes no body refuses one instead of ignoring it', async t => {
  const s = await stack(t)
  const SECRET = 'bad-input-secret-that-is-long-enough-0123'
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const admin = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
  const pause = await app.inject({ method: 'POST', url: '/api/narrative/rollout/pause', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"paused":false}' })
  t.equal(pause.statusCode, 400)
  t.equal(pause.json().code, 'NARR_UNEXPECTED_BODY')
  t.match(pause.json().message, 'POST /api/narrative/rollout/pause takes no body')
  t.equal((await app.inject({ method: 'GET', url: '/api/narrative/rollout', headers: admin })).json().paused, false, 'and it did not pause')
  const bare = await app.inject({ method: 'POST', url: '/api/narrative/rollout/pause', headers: admin })
  t.equal(bare.statusCode, 200, 'without a body, as before')
  t.equal(bare.json().paused, true)
  const remove = await app.inject({ method: 'DELETE', url: '/api/keys/key_nope', headers: { ...admin, 'content-type': 'application/json' }, payload: '{"force":true}' })
  t.equal(remove.statusCode, 400)
  t.equal(remove.json().code, 'NARR_UNEXPECTED_BODY')
})

t.test('a request Node refuses before Fastify sees it is answered in the app\'s shape (OpenAI\'s under /v1), saying what was wrong', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const port = (app.server.address() as { port: number }).port
  const badLength = await rawRequest(port, 'POST /api/narrative HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}')
  t.equal(badLength.status, 400)
  const body = JSON.parse(badLength.body)
  t.equal(body.code, 'NARR_BAD_HTTP')
  t.match(body.message, /not valid HTTP\/1\.1: .*Content-Length/i)
  t.match(badLength.headers, /x-request-id: req-/i)
  const both = await rawRequest(port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
  t.equal(both.status, 400)
  const openAI = JSON.parse(both.body)
  t.equal(openAI.error.type, 'invalid_request_error', 'OpenAI\'s shape under /v1')
  t.match(openAI.error.message, /not valid HTTP/)
  const method = await rawRequest(port, 'FOO / HTTP/1.1\r\nHost: x\r\n\r\n')
  t.equal(method.status, 400)
  t.match(JSON.parse(method.body).message, /method/)
})

t.test('unknown paths and methods under /v1 are answered in OpenAI\'s shape', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })
  const wrongMethod = await app.inject({ method: 'GET', url: '/v1/chat/completions' })
  t.equal(wrongMethod.statusCode, 405)
  t.equal(wrongMethod.headers.allow, 'POST')
  t.equal(wrongMethod.json().error.code, 'method_not_allowed')
  const unknown = await app.inject({ method: 'POST', url: '/v1/embeddings', payload: {} })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().error.type, 'invalid_request_error')
  t.match(unknown.json().error.message, /\/v1\/embeddings/)
  t.equal((await app.inject({ method: 'GET', url: '/nowhere' })).json().code, 'NARR_NOT_FOUND', 'elsewhere, the app\'s own shape')
})
