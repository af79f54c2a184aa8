// POST /v1/chat/completions as an app sees it: the official `openai` SDK as
// the client, two instances listening on loopback, one Redis and one
// PostgreSQL between them, the OpenAI stand-in upstream.
import OpenAI from 'openai'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, stack } from './helper.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { defaultContent, defaultToolCall } from './support/fake-openai.ts'

const SECRET = 'chat-sdk-test-secret-that-is-long-enough-0123456789'
const admin = { authorization: `Bearer ${mintAdminToken(SECRET, 'alice', 3600)}` }
const user = (content: string): OpenAI.ChatCompletionMessageParam[] => [{ role: 'user', content }]

const s = await stack(t)
// The in-process tier on, as in production (build() turns it off by default).
const env = { ...s.env, JWT_SECRET: SECRET, DATABASE_URL: await uniqueDatabaseUrl(t), LOCAL_CACHE_MAX_ENTRIES: '1000' }
const a = await build(t, { env, listen: true })
const b = await build(t, { env, listen: true })
const made = await a.inject({ method: 'POST', url: '/api/keys', headers: admin, payload: { name: 'sdk app', rateLimit: 1000 } })
if (made.statusCode !== 201) throw new Error(`key not made: ${made.statusCode} ${made.body}`)
const secret = (made.json() as { secret: string }).secret

/** The SDK pointed at an instance: its base URL and the API key are all an app changes. */
function clientOf (app: FastifyInstance): OpenAI {
  const { port } = app.server.address() as { port: number }
  return new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: secret, maxRetries: 0, timeout: 15_000 })
}
const clientA = clientOf(a)
const clientB = clientOf(b)

/** Every chunk of a streamed answer, as the SDK hands them over, and the answer's X-Cache. */
async function streamed (client: OpenAI, body: OpenAI.ChatCompletionCreateParamsStreaming, headers: Record<string, string> = {}): Promise<{ chunks: OpenAI.ChatCompletionChunk[], xCache: string | null }> {
  const { data, response } = await client.chat.completions.create(body, { headers }).withResponse()
  const chunks: OpenAI.ChatCompletionChunk[] = []
  for await (const chunk of data) chunks.push(chunk)
  return { chunks, xCache: response.headers.get('x-cache') }
}

/** The store's write lands in the background: wait for it on both instances. */
async function settled (): Promise<void> {
  await Promise.all([a.chat.engine.idle(), b.chat.engine.idle()])
}

t.beforeEach(() => s.openai.reset())

t.test('JSON and streamed answers through the SDK: one upstream call, hits on the other instance, the same chunks', async t => {
  const body = { model: 'gpt-4o', messages: user('sdk json'), temperature: 0.5 }
  const first = await clientA.chat.completions.create(body).withResponse()
  t.equal(first.response.headers.get('x-cache'), 'MISS')
  t.equal(first.data.object, 'chat.completion')
  t.equal(first.data.choices[0].message.content, defaultContent(body))
  t.equal(first.data.choices[0].finish_reason, 'stop')
  t.ok((first.data.usage?.prompt_tokens ?? 0) > 0, 'usage, as the API gives it')
  await settled()
  const hit = await clientB.chat.completions.create(body).withResponse()
  t.equal(hit.response.headers.get('x-cache'), 'HIT', 'instance B answers from what A paid for')
  t.same(hit.data, first.data)

  const stream = { ...body, messages: user('sdk stream'), stream: true as const }
  const miss = await streamed(clientB, stream)
  t.equal(miss.xCache, 'MISS')
  t.equal(miss.chunks.map(c => c.choices[0]?.delta.content ?? '').join(''), defaultContent(stream))
  t.equal(miss.chunks.at(-1)?.choices[0].finish_reason, 'stop')
  await settled()
  const replay = await streamed(clientA, stream)
  t.equal(replay.xCache, 'HIT')
  t.same(replay.chunks, miss.chunks, 'replayed on the other instance with the same chunk boundaries')
  t.equal(s.openai.calls, 2, 'one upstream call per distinct request')
})

t.test('200 concurrent identical streamed requests over two instances: one upstream call, every client gets the same chunks from the first', async t => {
  s.openai.setStream({ chunks: 8, delayMs: 40 })
  const body = { model: 'gpt-4o', messages: user('two hundred at once'), stream: true as const }
  const answers = await Promise.all(Array.from({ length: 200 }, async (_, i) => await streamed(i % 2 === 0 ? clientA : clientB, body)))
  t.equal(s.openai.calls, 1, 'one upstream call for 200 streams on two instances')
  const reference = answers[0].chunks
  t.equal(reference.length, 10, 'the role chunk, eight content pieces, the finish')
  t.equal(reference[0].choices[0].delta.role, 'assistant', 'starting with the first chunk')
  let same = 0
  for (const answer of answers) if (JSON.stringify(answer.chunks) === JSON.stringify(reference)) same++
  t.equal(same, 200, 'every stream got the same chunks')
  const labels = new Set(answers.map(x => x.xCache))
  t.ok([...labels].every(l => l === 'MISS' || l === 'COALESCED' || l === 'HIT'), `answered by the one call (${[...labels].join(', ')})`)
})

t.test('a stream being written on one instance is joined live on the other, from its first chunk', async t => {
  s.openai.setStream({ chunks: 10, delayMs: 100 })
  const body = { model: 'gpt-4o', messages: user('join me live elsewhere'), stream: true as const }
  const arrivals = async (client: OpenAI): Promise<{ chunks: OpenAI.ChatCompletionChunk[], at: number[], xCache: string | null }> => {
    const { data, response } = await client.chat.completions.create(body).withResponse()
    const chunks: OpenAI.ChatCompletionChunk[] = []
    const at: number[] = []
    for await (const chunk of data) {
      chunks.push(chunk)
      at.push(Date.now())
    }
    return { chunks, at, xCache: response.headers.get('x-cache') }
  }
  const onA = arrivals(clientA)
  await s.openai.waitForCalls(1)
  await new Promise(resolve => setTimeout(resolve, 250)) // A's stream is under way
  const [viaA, viaB] = await Promise.all([onA, arrivals(clientB)])
  t.equal(s.openai.calls, 1, 'one upstream call')
  t.same(viaB.chunks, viaA.chunks, 'the same chunks, from the first')
  t.equal(viaB.xCache, 'COALESCED')
  // A's last chunk arrives as the upstream's stream ends: B had most of it before then.
  const upstreamEnd = viaA.at[viaA.at.length - 1]
  const early = viaB.at.filter(at => at < upstreamEnd).length
  t.ok(viaB.at[0] < upstreamEnd, `B's first chunk came ${upstreamEnd - viaB.at[0]} ms before the upstream's end`)
  t.ok(early >= 5, `${early} of B's ${viaB.at.length} chunks came before the upstream's end`)
})

t.test('a tool-call stream is stored and replayed chunk for chunk, and assembled for a JSON request', async t => {
  const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }]
  const body = { model: 'gpt-4o', messages: user('call a tool'), tools, stream: true as const }
  const first = await streamed(clientA, body)
  t.equal(first.chunks.at(-1)?.choices[0].finish_reason, 'tool_calls')
  const deltas = first.chunks.flatMap(c => c.choices[0]?.delta.tool_calls ?? [])
  t.ok(deltas.length > 2, `the call came in pieces (${deltas.length})`)
  t.equal(deltas.map(d => d.function?.arguments ?? '').join(''), defaultToolCall(body)?.arguments)
  await settled()
  const replay = await streamed(clientB, body)
  t.equal(replay.xCache, 'HIT')
  t.same(replay.chunks, first.chunks, 'the same tool-call deltas, the same boundaries')
  const json = await clientB.chat.completions.create({ model: 'gpt-4o', messages: user('call a tool'), tools })
  t.equal(json.choices[0].finish_reason, 'tool_calls')
  t.equal(json.choices[0].message.content, null)
  t.match(json.choices[0].message.tool_calls, [{ id: deltas[0].id, type: 'function', function: defaultToolCall(body) }])
  t.equal(s.openai.calls, 1)
})

t.test('a stream cut upstream is never cached: the next identical request calls the model again', async t => {
  s.openai.setMode('stream-cut')
  const body = { model: 'gpt-4o', messages: user('cut me off'), stream: true as const }
  const received: OpenAI.ChatCompletionChunk[] = []
  const failure = await (async () => {
    for await (const chunk of await clientA.chat.completions.create(body)) received.push(chunk)
  })().catch((err: unknown) => err)
  t.ok(failure instanceof OpenAI.APIError, `the SDK reports the broken stream (${String(failure)})`)
  t.ok(received.length > 0 && received.at(-1)?.choices[0]?.finish_reason == null, 'a prefix, no finish')
  await settled()
  s.openai.setMode('ok')
  const again = await streamed(clientB, body)
  t.equal(again.xCache, 'MISS', 'nothing was stored')
  t.equal(again.chunks.at(-1)?.choices[0].finish_reason, 'stop')
  t.equal(s.openai.calls, 2, 'the model was asked again')
})

t.test('an upstream 429: passed through, or with stale-if-error the older entry answers', async t => {
  const body = { model: 'gpt-4o', messages: user('rate limited later') }
  const first = await clientA.chat.completions.create(body)
  await settled()
  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '2' } })
  const limited = await clientB.chat.completions.create(body, { headers: { 'Cache-Control': 'no-cache' } }).catch((err: unknown) => err)
  t.ok(limited instanceof OpenAI.RateLimitError, 'the SDK sees the 429')
  t.equal((limited as InstanceType<typeof OpenAI.RateLimitError>).headers?.get('retry-after'), '2', 'with its Retry-After')
  s.openai.failNext(1, { status: 429, headers: { 'retry-after': '2' } })
  const kept = await clientB.chat.completions.create(body, { headers: { 'Cache-Control': 'no-cache, stale-if-error=60' } }).withResponse()
  t.equal(kept.response.headers.get('x-cache'), 'STALE')
  t.same(kept.data.choices, first.choices, 'the entry there was')
  t.equal(s.openai.calls, 3)
})
