// Bad input on the /v1 routes: always a 4xx in OpenAI's shape naming what was wrong, never a 5xx, never an upstream call.
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { CHAT_BODY_LIMIT } from '../routes/chat/index.ts'
import { canonicalChat, ChatBodyError, MAX_NESTING } from '../src/chat/canonical.ts'

const SECRET = 'chat-bad-input-secret-that-is-long-enough-0123'
const HEAD = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]'
const ROUTES = ['/v1/chat/completions', '/v1/cache/explain']

/** `x` within n arrays, as text: `[[…[x]…]]`. */
const arrays = (n: number, x = ''): string => '['.repeat(n) + x + ']'.repeat(n)
/** The path of the value n arrays down: `[0][0]…`. */
const down = (n: number): string => '[0]'.repeat(n)

async function setup (t: Test) {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET } })
  const res = await app.inject({ method: 'POST', url: '/api/keys', headers: { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }, payload: { name: 'app' } })
  const key: { secret: string } = res.json()
  const send = async (url: string, payload: string, headers: Record<string, string> = {}) =>
    await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', ...headers }, payload })
  return { s, app, send }
}

type Answer = Awaited<ReturnType<FastifyInstance['inject']>>

/** A 4xx in OpenAI's shape with this code; its message and param as asserted by the caller. */
function refused (t: Test, res: Answer, status: number, code: string, what: string): { message: string, param: unknown } {
  t.equal(res.statusCode, status, `${what}: ${status} (${res.body.slice(0, 200)})`)
  const body = res.json()
  t.same(Object.keys(body), ['error'], `${what}: OpenAI's shape`)
  const error = body.error ?? {}
  t.same(Object.keys(error).sort(), ['code', 'message', 'param', 'type'])
  t.equal(error.type, 'invalid_request_error')
  t.equal(error.code, code)
  return { message: String(error.message), param: error.param }
}

t.test('nesting deeper than the bound: a 400 naming where, on both routes and streamed, whatever the field', async t => {
  const { s, send } = await setup(t)
  const deep = `${HEAD},"x":${arrays(3000)}}`
  for (const url of ROUTES) {
    for (const [what, payload, headers] of [
      ['3,000 levels', deep, {}],
      ['3,000 levels, streamed', deep.replace('{', '{"stream":true,'), {}],
      ['3,000 levels, no-store', deep, { 'cache-control': 'no-store' }],
      ['as deep as 1 MiB allows', `${HEAD},"x":${arrays((CHAT_BODY_LIMIT - HEAD.length - 8) / 2)}}`, {}]
    ] as Array<[string, string, Record<string, string>]>) {
      const error = refused(t, await send(url, payload, headers), 400, 'nesting_too_deep', `${url} ${what}`)
      t.equal(error.param, `x${down(MAX_NESTING)}`, 'param: where the bound was passed')
      t.ok(error.message.startsWith(`x${down(MAX_NESTING)} `), 'the message names it too')
      t.match(error.message, `more than ${MAX_NESTING} levels`)
    }
    // Within a message, in objects; and in a delivery field, which the key never sees.
    const inMessage = `{"model":"gpt-4o","messages":[{"role":"user","content":${'{"a":'.repeat(100)}1${'}'.repeat(100)}}]}`
    t.equal(refused(t, await send(url, inMessage), 400, 'nesting_too_deep', `${url} in messages`).param, `messages[0].content${'.a'.repeat(MAX_NESTING - 2)}`)
    t.equal(refused(t, await send(url, `${HEAD},"metadata":{"odd key":${arrays(100)}}}`), 400, 'nesting_too_deep', `${url} in metadata`).param, `metadata["odd key"]${down(MAX_NESTING - 1)}`)
  }
  // The bound itself is taken.
  const atBound = await send('/v1/cache/explain', `${HEAD},"x":${arrays(MAX_NESTING, '7')}}`)
  t.equal(atBound.statusCode, 200, atBound.body.slice(0, 200))
  t.equal(JSON.stringify(atBound.json().canonical.x), arrays(MAX_NESTING, '7'))
  t.equal(s.openai.calls, 0, 'never an upstream call')
})

t.test('numbers JSON cannot carry (1e400 is Infinity): a 400 naming the field, never null, never dropped as a default', async t => {
  const { s, send } = await setup(t)
  const cases: Array<[string, string]> = [
    ['"temperature":1e400', 'temperature'],
    ['"temperature":-1e400', 'temperature'],
    ['"max_tokens":-1e400', 'max_tokens'],
    ['"seed":1e999', 'seed'],
    ['"logit_bias":{"50256":-1e400}', 'logit_bias["50256"]'],
    ['"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"number","maximum":1e400}}}}}]', 'tools[0].function.parameters.properties.n.maximum'],
    ['"metadata":{"n":1e400}', 'metadata.n'],
    ['"stream_options":{"include_usage":true,"n":[1,2,-1e400]}', 'stream_options.n[2]']
  ]
  for (const url of ROUTES) {
    for (const [field, path] of cases) {
      const error = refused(t, await send(url, `${HEAD},${field}}`), 400, 'invalid_number', `${url} ${field}`)
      t.equal(error.param, path)
      t.ok(error.message.startsWith(`${path} `), `names ${path}: ${error.message}`)
      t.match(error.message, /finite/)
    }
    const inMessage = refused(t, await send(url, '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"user","content":1e400}]}'), 400, 'invalid_number', `${url} in messages`)
    t.equal(inMessage.param, 'messages[1].content')
  }
  // The largest finite numbers are kept as they are.
  const big = await send('/v1/cache/explain', `${HEAD},"max_tokens":1e308,"temperature":-1.7976931348623157e308}`)
  t.equal(big.statusCode, 200)
  t.same([big.json().canonical.max_tokens, big.json().canonical.temperature], [1e308, -1.7976931348623157e308])
  t.equal(s.openai.calls, 0, 'never an upstream call')
})

t.test('body errors say what the server takes, in OpenAI\'s shape', async t => {
  const { s, send } = await setup(t)
  for (const url of ROUTES) {
    // With Cache-Control too: the chat route's memory-hit hook then leaves the body to the parser.
    for (const headers of [{}, { 'cache-control': 'no-cache' }] as Array<Record<string, string>>) {
      const where = `${url} ${JSON.stringify(headers)}`
      const proto = refused(t, await send(url, '{"model":"gpt-4o","messages":[{"role":"user","content":"hi","__proto__":{"admin":true}}]}', headers), 400, 'forbidden_key', `${where} __proto__`)
      t.match(proto.message, /forbidden "__proto__" key/)
      const ctor = refused(t, await send(url, '{"model":"gpt-4o","messages":[{"role":"user","content":"hi","constructor":{"prototype":{"admin":true}}}]}', headers), 400, 'forbidden_key', `${where} constructor.prototype`)
      t.match(ctor.message, /forbidden "constructor.prototype" key/)
      const trailingComma = `${HEAD},}`
      const malformed = refused(t, await send(url, trailingComma, headers), 400, 'invalid_json', `${where} malformed`)
      t.match(malformed.message, `Body is not valid JSON: Expected double-quoted property name in JSON at position ${trailingComma.length - 1}`, 'where, as JSON.parse says it')
      t.match(refused(t, await send(url, '', headers), 400, 'empty_body', `${where} empty`).message, /empty/)
    }
    const typed = refused(t, await send(url, `${HEAD}}`, { 'content-type': 'text/plain' }), 415, 'unsupported_media_type', `${url} text/plain`)
    t.match(typed.message, /text\/plain.*application\/json/)
    const large = refused(t, await send(url, `${HEAD},"x":"${'a'.repeat(CHAT_BODY_LIMIT)}"}`), 413, 'body_too_large', `${url} over 1 MiB`)
    t.match(large.message, /1024 KiB \(1048576 bytes\)/, 'the route\'s limit, not the server\'s 16 KiB')
  }
  t.equal(s.openai.calls, 0, 'never an upstream call')
})

t.test('canonicalChat: the bound and finite numbers, without recursion past the bound', async t => {
  const body = (x: unknown): Record<string, unknown> => ({ model: 'm', messages: [], x })
  let deep: unknown = 1
  for (let i = 0; i < 100_000; i++) deep = [deep]
  t.throws(() => canonicalChat(body(deep)), new ChatBodyError(`x${down(MAX_NESTING)} is nested more than ${MAX_NESTING} levels deep (arrays and objects); ${MAX_NESTING} is the limit`, 'nesting_too_deep', `x${down(MAX_NESTING)}`), '100,000 levels: the bound, not the stack')
  let atBound: unknown = 1
  for (let i = 0; i < MAX_NESTING; i++) atBound = { 'a-b': atBound }
  t.same(canonicalChat(body(atBound)).canonical.x, atBound)
  t.throws(() => canonicalChat(body({ deeper: atBound })), { code: 'nesting_too_deep', param: `x.deeper${'["a-b"]'.repeat(MAX_NESTING - 1)}` })
  t.throws(() => canonicalChat({ ...body(1), max_tokens: -Infinity }), { code: 'invalid_number', param: 'max_tokens' }, 'not dropped as the default null')
  t.throws(() => canonicalChat({ ...body(1), user: [NaN] }), { code: 'invalid_number', param: 'user[0]' }, 'delivery fields are checked too')
  t.same(canonicalChat({ ...body(1), temperature: 1, max_tokens: null, response_format: { type: 'text' } }).dropped, ['max_tokens', 'response_format', 'temperature'], 'defaults still dropped')
})

t.test('a body that fails the schema: OpenAI\'s codes, and the parameter named as OpenAI names it', async t => {
  const { s, send } = await setup(t)
  for (const url of ROUTES) {
    const missing = refused(t, await send(url, '{"messages":[{"role":"user","content":"hi"}]}'), 400, 'missing_required_parameter', `${url} without model`)
    t.equal(missing.param, 'model')
    const role = refused(t, await send(url, '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"content":"x"}]}'), 400, 'missing_required_parameter', `${url} a message without role`)
    t.equal(role.param, 'messages[1].role')
    const wrongType = refused(t, await send(url, '{"model":7,"messages":[{"role":"user","content":"hi"}]}'), 400, 'invalid_value', `${url} a model that is not a string`)
    t.equal(wrongType.param, 'model')
    t.match(wrongType.message, /model/)
  }
  t.equal(s.openai.calls, 0, 'the upstream was never called')
})
