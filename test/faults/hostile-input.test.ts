// Hostile input on every route of the OpenAPI document: fast-check fuzzing
// (schema-shaped values with local corruptions, and plain garbage), deeply
// nested JSON, huge numbers, prototype-pollution keys and oversized headers.
// Never a 5xx, never a hang, never a model call for a refused request, and
// Object.prototype untouched. (Slow-loris clients: slow-loris.test.ts.)
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import fc from 'fast-check'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { build, exampleBody, stack } from '../helper.ts'
import { mintAdminToken } from '../../src/admin/token.ts'
import { BODY_LIMIT } from '../../src/app.ts'
import { canonicalLocale } from '../../src/domain/locale.ts'
import { sleep } from '../support/wait.ts'

const SECRET = 'fault-suite-secret-that-is-long-enough-000'
const TOKEN = mintAdminToken(SECRET, 'fuzzer', 3600)
/** Bound on any single request: a hang fails the property. */
const REQUEST_BOUND_MS = 5000

type Schema = Record<string, any>
interface Operation { method: string, path: string, op: Schema }

const openapi = JSON.parse(readFileSync(new URL('../../openapi/openapi.json', import.meta.url), 'utf8')) as Schema
const operations: Operation[] = Object.entries(openapi.paths as Record<string, Schema>).flatMap(([path, item]) =>
  Object.entries(item).filter(([m]) => ['get', 'post', 'put', 'patch', 'delete'].includes(m)).map(([method, op]) => ({ method: method.toUpperCase(), path, op })))

const PROTO_SNAPSHOT = Object.getOwnPropertyNames(Object.prototype).sort().join(',')
function assertPrototypeClean (): void {
  const now = Object.getOwnPropertyNames(Object.prototype).sort().join(',')
  if (now !== PROTO_SNAPSHOT) throw new Error(`Object.prototype changed: ${now}`)
  if (({} as Record<string, unknown>).polluted !== undefined) throw new Error('Object.prototype.polluted is set')
}

// ---------------------------------------------------------------------------
// JSON Schema (the subset the document uses) to fast-check arbitraries.

/** Values no schema expects. */
const garbage: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(1e308, -1e308, 5e-324, -0, 2 ** 53 + 1, '', ' ', '\u0000', '💥'.repeat(50), 'x'.repeat(5000), null, [], {}, true),
  fc.string({ unit: 'binary', maxLength: 80 })
)

const hostileKey = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '', ' ', 'a\u0000b', '$ref', 'polluted')
)

function conforming (schema: Schema, depth: number): fc.Arbitrary<unknown> {
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum)
  switch (schema.type) {
    case 'string': {
      const min = schema.minLength ?? 0
      const max = schema.maxLength ?? 64
      if (typeof schema.pattern === 'string') {
        return fc.stringMatching(new RegExp(schema.pattern)).filter(s => s.length >= min && s.length <= max)
      }
      return fc.string({ minLength: min, maxLength: Math.min(max, 80), unit: 'grapheme' })
    }
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e12, max: schema.maximum ?? 1e12, noNaN: true, noDefaultInfinity: true })
    case 'integer':
      return fc.integer({ min: schema.minimum ?? -1_000_000, max: schema.maximum ?? 1_000_000 })
    case 'boolean':
      return fc.boolean()
    case 'array': {
      const items = shaped(schema.items ?? {}, depth + 1)
      const constraints = { minLength: schema.minItems ?? 0, maxLength: schema.maxItems ?? 5 }
      return schema.uniqueItems === true
        ? fc.uniqueArray(items, { ...constraints, selector: v => JSON.stringify(v) })
        : fc.array(items, constraints)
    }
    case 'object': {
      if (schema.properties !== undefined) {
        const props: Record<string, fc.Arbitrary<unknown>> = {}
        for (const [k, v] of Object.entries(schema.properties as Record<string, Schema>)) props[k] = shaped(v, depth + 1)
        const record = fc.record(props, { requiredKeys: schema.required ?? [] })
        // Now and then an unknown property, which additionalProperties: false must refuse.
        const extra = fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.tuple(hostileKey, garbage) })
        return fc.tuple(record, extra)
          .map(([r, extra]) => (extra === null ? r : { ...r, [extra[0]]: extra[1] }))
      }
      const valueSchema = typeof schema.additionalProperties === 'object' ? schema.additionalProperties : {}
      const names = schema.propertyNames?.pattern !== undefined ? fc.stringMatching(new RegExp(schema.propertyNames.pattern)) : fc.string({ maxLength: 12 })
      return fc.dictionary(fc.oneof({ weight: 10, arbitrary: names }, { weight: 1, arbitrary: hostileKey }), shaped(valueSchema, depth + 1), {
        minKeys: schema.minProperties ?? 0,
        maxKeys: Math.min(schema.maxProperties ?? 6, 40)
      })
    }
    default:
      return garbage
  }
}

/** Mostly what the schema asks for, with a local corruption now and then. */
function shaped (schema: Schema, depth = 0): fc.Arbitrary<unknown> {
  if (depth > 6) return garbage
  return fc.oneof({ weight: 10, arbitrary: conforming(schema, depth) }, { weight: 1, arbitrary: garbage })
}

const SYSTEM_NAME = /^[A-Za-z][A-Za-z0-9 '-]{0,39}$/
/**
 * A request the domain rules accept too, to reach the engine: names in their
 * canonical spelling (no trailing or doubled spaces, which would make two
 * names one), shares of at least 0.5 (smaller ones are dropped) summing to at
 * most 100, and a locale that is a well-formed tag.
 */
const validNarrative: fc.Arbitrary<unknown> = fc.uniqueArray(fc.stringMatching(SYSTEM_NAME).filter(n => n === n.trim() && !n.includes('  ') && !['constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty'].includes(n)), { minLength: 2, maxLength: 32 })
  .chain(names => fc.record({
    shares: fc.array(fc.double({ min: 0.5, max: 3, noNaN: true }), { minLength: names.length, maxLength: names.length }),
    classification: fc.constantFrom('primary', 'hybrid', 'unresolved'),
    picks: fc.shuffledSubarray(names, { minLength: 2, maxLength: Math.min(4, names.length) }),
    locale: fc.option(fc.stringMatching(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/).filter(l => l.length <= 35 && canonicalLocale(l) !== undefined), { nil: undefined }),
    userId: fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: undefined })
  }).map(({ shares, classification, picks, locale, userId }) => ({
    profile: {
      classification,
      ...(classification === 'primary' ? { primary: picks[0] } : {}),
      ...(classification === 'hybrid' ? { hybrid: picks } : {}),
      percentages: Object.fromEntries(names.map((n, i) => [n, shares[i]]))
    },
    ...(locale === undefined ? {} : { locale }),
    ...(userId === undefined ? {} : { userId })
  })))

/** A request for `operation`: schema-shaped or garbage parameters and body, sometimes a raw or mistyped body. */
function requestFor ({ method, path, op }: Operation): fc.Arbitrary<InjectOptions & { bodyKind: string }> {
  const params = (op.parameters ?? []) as Schema[]
  const pathParams = params.filter(p => p.in === 'path')
  const queryParams = params.filter(p => p.in === 'query')
  const jsonSchema = op.requestBody?.content?.['application/json']?.schema as Schema | undefined

  const pathArb = fc.tuple(...pathParams.map(p => fc.oneof(shaped(p.schema), fc.string({ unit: 'binary', maxLength: 70 }))))
    .map(values => pathParams.reduce((url, p, i) => url.replace(`{${p.name}}`, encodeURIComponent(String(values[i]))), path))
  const queryArb = fc.tuple(
    fc.tuple(...queryParams.map(p => fc.option(shaped(p.schema), { freq: 4 }))),
    fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(hostileKey, fc.string({ maxLength: 20 })), { minLength: 1, maxLength: 3 }) }),
    fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('&__proto__[polluted]=1', '&constructor[prototype][polluted]=1', '&%zz=%', '&a=1&a=2&a[]=3') })
  ).map(([known, extra, raw]) => {
    const q = new URLSearchParams()
    queryParams.forEach((p, i) => { if (known[i] !== null) q.append(p.name, typeof known[i] === 'string' ? known[i] as string : JSON.stringify(known[i])) })
    for (const [k, v] of extra) q.append(k, v)
    const text = q.toString() + raw
    return text === '' ? '' : `?${text}`
  })
  const bodyArb: fc.Arbitrary<{ bodyKind: string, payload?: string, contentType?: string }> = jsonSchema === undefined
    ? fc.constant({ bodyKind: 'none' })
    : fc.oneof(
      { weight: path === '/api/narrative' ? 4 : 0, arbitrary: validNarrative.map(v => ({ bodyKind: 'valid', payload: JSON.stringify(v), contentType: 'application/json' })) },
      { weight: 8, arbitrary: shaped(jsonSchema).map(v => ({ bodyKind: 'shaped', payload: JSON.stringify(v) ?? 'null', contentType: 'application/json' })) },
      { weight: 2, arbitrary: garbage.map(v => ({ bodyKind: 'garbage', payload: JSON.stringify(v) ?? 'null', contentType: 'application/json' })) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(s => ({ bodyKind: 'raw', payload: s, contentType: 'application/json' })) },
      {
        weight: 1,
        arbitrary: fc.tuple(fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', 'application/json; charset=latin1', 'application/xml'), fc.string({ maxLength: 50 }))
          .map(([ct, s]) => ({ bodyKind: 'mistyped', payload: s, contentType: ct }))
      }
    )
  return fc.tuple(pathArb, queryArb, bodyArb, fc.integer({ min: 1, max: 254 }), fc.integer({ min: 1, max: 254 }), fc.boolean()).map(([url, query, body, a, b, sse]) => {
    const headers: Record<string, string> = {}
    if (op.security !== undefined) headers.authorization = `Bearer ${TOKEN}`
    if (body.contentType !== undefined) headers['content-type'] = body.contentType
    if (sse) headers.accept = 'text/event-stream'
    // A different allowlisted address each time: the admin rate limit (20 per 2 s per address) is not what is fuzzed.
    return { method: method as InjectOptions['method'], url: url + query, headers, payload: body.payload, remoteAddress: `10.77.${a}.${b}`, bodyKind: body.bodyKind }
  })
}

async function fuzzApp (t: Test): Promise<{ app: FastifyInstance, calls: () => number }> {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET: SECRET, ADMIN_IP_ALLOWLIST: '127.0.0.1,::1,10.77.0.0/16', GENERATION_RATE_LIMIT: '0' } })
  return { app, calls: () => s.openai.calls }
}

async function bounded (app: FastifyInstance, options: InjectOptions): Promise<{ statusCode: number, body: string, ms: number }> {
  const started = Date.now()
  const res = await Promise.race([app.inject(options), sleep(REQUEST_BOUND_MS).then(() => undefined)])
  if (res === undefined) throw new Error(`${options.method} ${options.url}: no answer within ${REQUEST_BOUND_MS} ms`)
  return { statusCode: res.statusCode, body: res.body, ms: Date.now() - started }
}

t.test('fuzz every route of the OpenAPI document: never a 5xx, never a hang, no model call for a refused request, prototype untouched', async t => {
  const { app, calls } = await fuzzApp(t)
  t.ok(operations.length >= 6, `${operations.length} operations in openapi/openapi.json`)
  const seen = new Map<string, Map<number, number>>()
  for (const operation of operations) {
    const name = `${operation.method} ${operation.path}`
    const counts = new Map<number, number>()
    seen.set(name, counts)
    await fc.assert(fc.asyncProperty(requestFor(operation), async ({ bodyKind, ...options }) => {
      const before = calls()
      const res = await bounded(app, options)
      counts.set(res.statusCode, (counts.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${bodyKind} ${options.method} ${options.url} ${String(options.payload).slice(0, 300)}: ${res.body}`)
      if (operation.path === '/api/narrative' && res.statusCode !== 200 && calls() !== before) {
        throw new Error(`a refused request (${res.statusCode}) called the model: ${String(options.payload).slice(0, 300)}`)
      }
      if (operation.path === '/api/narrative' && bodyKind === 'valid' && res.statusCode !== 200) {
        throw new Error(`a valid request was refused (${res.statusCode}): ${String(options.payload).slice(0, 300)}: ${res.body}`)
      }
      if (operation.path === '/api/narrative' && (bodyKind === 'garbage' || bodyKind === 'raw' || bodyKind === 'mistyped') && res.statusCode === 200) {
        // garbage can be valid by chance only if it is a whole valid request object, which jsonValue never builds
        throw new Error(`garbage accepted: ${String(options.payload).slice(0, 300)}`)
      }
      assertPrototypeClean()
    }), { numRuns: operation.path === '/api/narrative' ? 300 : 120 })
  }
  for (const [name, counts] of seen) t.comment(`${name}: ${[...counts].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${c} x${n}`).join(', ')}`)
  const narrative = seen.get('POST /api/narrative')
  t.ok((narrative?.get(200) ?? 0) > 0 && (narrative?.get(400) ?? 0) > 0, 'the fuzzer reached both valid and refused narratives')
  t.ok([...seen.values()].every(counts => [...counts.keys()].every(code => code < 500)), 'no 5xx anywhere')
  assertPrototypeClean()
})

t.test('deeply nested JSON: 10,000 levels are refused at once (too large), the deepest that fits is refused by validation; the server serves on', async t => {
  const { app, calls } = await fuzzApp(t)
  const deep = (n: number): string => `{"profile":${'['.repeat(n)}${']'.repeat(n)}}`
  const deepObjects = (n: number): string => `{"profile":${'{"a":'.repeat(n)}{"constructor":{"prototype":{"polluted":1}}}${'}'.repeat(n)}}`
  const deepProto = (n: number): string => `{"profile":${'{"a":'.repeat(n)}{"__proto__":{"polluted":1}}${'}'.repeat(n)}}`
  const cases: Array<[string, string, number[]]> = [
    ['10,000 levels of arrays', deep(10_000), [413]],
    ['10,000 levels of objects', `{"profile":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`, [413]],
    ['arrays as deep as the body limit allows', deep(Math.floor((BODY_LIMIT - 12) / 2)), [400]],
    ['objects as deep as the body limit allows, constructor.prototype at the bottom', deepObjects(Math.floor((BODY_LIMIT - 60) / 6)), [400]],
    ['objects as deep as the body limit allows, __proto__ at the bottom', deepProto(Math.floor((BODY_LIMIT - 60) / 6)), [400]]
  ]
  for (const [name, payload, expected] of cases) {
    const res = await bounded(app, { method: 'POST', url: '/api/narrative', headers: { 'content-type': 'application/json' }, payload })
    t.ok(expected.includes(res.statusCode), `${name} (${payload.length} bytes): ${res.statusCode} in ${res.ms} ms — ${res.body.slice(0, 120)}`)
    t.ok(res.ms < 1000, `${name}: answered at once`)
    const admin = await bounded(app, { method: 'POST', url: '/api/narrative/prewarm', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, payload: payload.replace('"profile"', '"top"') })
    t.ok(admin.statusCode >= 400 && admin.statusCode < 500, `${name} on an admin route: ${admin.statusCode}`)
  }
  t.equal(calls(), 0, 'no model call')
  t.equal((await app.inject({ method: 'POST', url: '/api/narrative', payload: exampleBody })).statusCode, 200, 'still serving')
  assertPrototypeClean()
})

t.test('huge, tiny and odd numbers: valid ones are answered, the rest refused with 400, never a 5xx', async t => {
  const { app, calls } = await fuzzApp(t)
  // Sirius holds a share of its own, so a value that floors to 0 (and is dropped) still leaves a valid profile.
  const raw = (value: string): string => `{"profile":{"classification":"unresolved","percentages":{"Vega":${value},"Sirius":0.5}}}`
  const cases: Array<[string, number]> = [
    ['1e308', 400], ['-1e308', 400], ['1e400', 400], ['-1e400', 400], ['1' + '0'.repeat(5000), 400],
    ['100.00000000000002', 400], ['-0.0000001', 400], ['99.99999999999999999999999', 200], ['5e-324', 200], ['-0', 200],
    ['0.' + '0'.repeat(5000) + '1', 200], ['1E2', 200], ['0e0', 200], ['42.30000000000000000000000000000001', 200],
    ['0x10', 400], ['Infinity', 400], ['NaN', 400], ['1_000', 400], ['+1', 400], ['.5', 400], ['01', 400], ['"42"', 400], ['[42]', 400], ['{"$numberDecimal":"1"}', 400], ['true', 400], ['null', 400]
  ]
  for (const [value, expected] of cases) {
    const before = calls()
    const res = await bounded(app, { method: 'POST', url: '/api/narrative', headers: { 'content-type': 'application/json' }, payload: raw(value) })
    t.equal(res.statusCode, expected, `Vega: ${value.length > 40 ? value.slice(0, 20) + '…' : value} -> ${res.statusCode} ${res.statusCode === 200 ? '' : res.body.slice(0, 100)}`)
    if (res.statusCode !== 200) t.equal(calls(), before, 'refused: no model call')
  }
  const prewarm: Array<[string, number]> = [['1e308', 400], ['1.5', 400], ['9007199254740993', 400], ['-0', 400], ['1e3', 200], ['"5"', 400]]
  for (const [value, expected] of prewarm) {
    const res = await bounded(app, { method: 'POST', url: '/api/narrative/prewarm', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, payload: `{"top":${value}}` })
    t.equal(res.statusCode, expected, `prewarm top: ${value} -> ${res.statusCode}`)
  }
})

t.test('prototype pollution: __proto__ and constructor.prototype anywhere in a body, query or path are refused or inert; Object.prototype untouched', async t => {
  const { app, calls } = await fuzzApp(t)
  const p = '"percentages":{"Vega":10}'
  const bodies = [
    `{"__proto__":{"polluted":1},"profile":{"classification":"unresolved",${p}}}`,
    `{"profile":{"classification":"unresolved",${p},"__proto__":{"polluted":1}}}`,
    '{"profile":{"classification":"unresolved","percentages":{"Vega":10,"__proto__":{"polluted":1}}}}',
    `{"profile":{"classification":"hybrid","hybrid":[{"__proto__":{"polluted":1}},"Vega"],${p}}}`,
    `{"constructor":{"prototype":{"polluted":1}},"profile":{"classification":"unresolved",${p}}}`,
    `{"profile":{"classification":"unresolved",${p},"constructor":{"prototype":{"polluted":1}}}}`,
    '{"profile":{"classification":"unresolved","percentages":{"constructor":{"prototype":{"polluted":1}}}}}',
    `{"\\u005f_proto__":{"polluted":1},"profile":{"classification":"unresolved",${p}}}`,
    `{"__pro\\u0074o__":{"polluted":1},"profile":{"classification":"unresolved",${p}}}`,
    `{"profile":{"classification":"unresolved",${p}},"constructor":{"prototype":null}}`,
    '{"profile":{"classification":"unresolved","percentages":{"prototype":10}}}',
    '{"profile":{"classification":"unresolved","percentages":{"hasOwnProperty":10}}}',
    '{"profile":{"classification":"unresolved","percentages":{"toString":10}}}'
  ]
  for (const payload of bodies) {
    for (const url of ['/api/narrative', '/api/narrative/prewarm']) {
      const res = await bounded(app, { method: 'POST', url, headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, payload })
      t.equal(res.statusCode, 400, `${url} ${payload.slice(0, 90)}: 400 (${JSON.parse(res.body).message})`)
      assertPrototypeClean()
    }
  }
  t.equal(calls(), 0, 'no model call')
  const urls = [
    '/api/narrative/analytics?__proto__[polluted]=1',
    '/api/narrative/analytics?constructor[prototype][polluted]=1',
    '/api/narrative/analytics?__proto__=x&period=7d',
    '/api/narrative/cache?pattern=*&__proto__[polluted]=1',
    '/api/narrative/cache?pattern=__proto__',
    '/health?__proto__[polluted]=1'
  ]
  for (const url of urls) {
    const res = await bounded(app, { method: url.includes('/cache') ? 'DELETE' : 'GET', url, headers: { authorization: `Bearer ${TOKEN}` } })
    t.ok(res.statusCode < 500, `${url}: ${res.statusCode}`)
    assertPrototypeClean()
  }
  for (const id of ['__proto__', 'constructor', 'prototype', '__proto__%5Bpolluted%5D']) {
    const res = await bounded(app, { method: 'DELETE', url: `/api/narrative/user/${id}`, headers: { authorization: `Bearer ${TOKEN}` } })
    t.equal(res.statusCode, 200, `DELETE user ${id}: an ordinary id`)
    assertPrototypeClean()
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype.polluted is not set')
})

t.test('oversized headers: 431, and the server serves the next client', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env, listen: true })
  const port = (app.server.address() as { port: number }).port
  const rawRequest = (head: string): Promise<string> => new Promise(resolve => {
    const socket = connect({ port, host: '127.0.0.1' })
    let data = ''
    socket.on('data', d => { data += d.toString() })
    socket.on('error', () => resolve(data))
    socket.on('close', () => resolve(data))
    socket.write(head)
    setTimeout(() => socket.destroy(), 3000).unref()
  })
  const big = 'x'.repeat(20 * 1024)
  t.match(await rawRequest(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`), /^HTTP\/1\.1 431 /, 'one 20 KiB header: 431')
  const many = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'y'.repeat(60)}`).join('\r\n')
  t.match(await rawRequest(`GET /health HTTP/1.1\r\nHost: x\r\n${many}\r\n\r\n`), /^HTTP\/1\.1 431 /, '400 headers of 60 bytes: 431')
  t.match(await rawRequest(`GET /health?${'q'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 431 /, 'a 20 KiB request line: 431')
  const cookie = await fetch(`http://127.0.0.1:${port}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${'a'.repeat(20 * 1024)}` }, body: JSON.stringify(exampleBody) })
  t.equal(cookie.status, 431, 'a 20 KiB Authorization header through fetch: 431')
  const ok = await fetch(`http://127.0.0.1:${port}/api/narrative`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(exampleBody) })
  t.equal(ok.status, 200, 'the next client is served')
})
