// Proves test/support/fake-openai.ts speaks the Chat Completions API the way
// the real `openai` SDK expects, including the failure modes.
import OpenAI from 'openai'
import t from 'tap'
import { defaultContent, defaultToolCall, startFakeOpenAI } from './support/fake-openai.ts'
import { startFakeOpenAIProcess } from './support/fake-openai-process.ts'

const messages = [
  { role: 'system' as const, content: 'Reply with JSON {summary, bullets}.' },
  { role: 'user' as const, content: 'The quick brown fox jumps over the lazy dog.' }
]

t.test('fake OpenAI server with the real SDK', async t => {
  const fake = await startFakeOpenAI({ streamChunks: 5, streamDelayMs: 2 })
  t.teardown(() => fake.close())
  const client = new OpenAI({ apiKey: 'test', baseURL: fake.baseURL, maxRetries: 0, timeout: 2000 })
  t.beforeEach(() => fake.reset())

  t.test('JSON completion is deterministic and well-formed', async t => {
    const res = await client.chat.completions.create({ model: 'gpt-test', messages })
    t.equal(res.object, 'chat.completion')
    t.equal(res.model, 'gpt-test', 'model echoed')
    t.equal(res.choices[0].finish_reason, 'stop')
    const content = res.choices[0].message.content ?? ''
    const parsed = JSON.parse(content)
    t.type(parsed.summary, 'string')
    t.ok(Array.isArray(parsed.bullets) && parsed.bullets.length >= 2)
    t.equal(content, defaultContent({ messages }), 'content derived from last user message')
    t.ok(res.usage && res.usage.total_tokens === res.usage.prompt_tokens + res.usage.completion_tokens)
    t.ok(res._request_id, 'x-request-id surfaced by the SDK')

    const again = await client.chat.completions.create({ model: 'gpt-test', messages })
    t.equal(again.choices[0].message.content, content, 'same input, same content')
    const other = await client.chat.completions.create({
      model: 'gpt-test', messages: [{ role: 'user', content: 'something else' }]
    })
    t.not(other.choices[0].message.content, content, 'different input, different content')

    t.equal(fake.calls, 3)
    t.equal(fake.completed, 3)
    t.equal(fake.requests[0].authorization, 'Bearer test')
    t.equal(fake.requests[0].body?.model, 'gpt-test')
    t.same(fake.requests[0].body?.messages, messages)
  })

  t.test('streaming deltas concatenate to the JSON content', async t => {
    const stream = await client.chat.completions.create({
      model: 'gpt-test', messages, stream: true, stream_options: { include_usage: true }
    })
    let text = ''
    let deltas = 0
    let finish: string | null = null
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) {
      t.equal(chunk.object, 'chat.completion.chunk')
      const c = chunk.choices[0]
      if (c?.delta.content) { text += c.delta.content; deltas++ }
      if (c?.finish_reason) finish = c.finish_reason
      if (chunk.usage) usage = chunk.usage
    }
    t.equal(text, defaultContent({ messages }))
    t.equal(deltas, 5, 'configured number of content chunks')
    t.equal(finish, 'stop')
    t.ok(usage && usage.completion_tokens > 0, 'usage chunk when include_usage')
    t.equal(fake.requests[0].body?.stream, true)
  })

  t.test('tools: a tool call, streamed as tool_call deltas ending in finish_reason tool_calls, as OpenAI does', async t => {
    const tools = [{ type: 'function' as const, function: { name: 'search', parameters: { type: 'object', properties: { query: { type: 'string' } } } } }]
    const expected = defaultToolCall({ messages, tools })
    t.same(expected, { name: 'search', arguments: JSON.stringify({ query: messages[1].content, page: 1 }) })
    const json = await client.chat.completions.create({ model: 'm', messages, tools })
    t.equal(json.choices[0].finish_reason, 'tool_calls')
    t.equal(json.choices[0].message.content, null)
    t.match(json.choices[0].message.tool_calls, [{ id: /^call_/, type: 'function', function: expected }])
    const stream = await client.chat.completions.create({ model: 'm', messages, tools, stream: true })
    let name = ''
    let args = ''
    let id: string | undefined
    let deltas = 0
    let finish: string | null = null
    for await (const chunk of stream) {
      const c = chunk.choices[0]
      for (const call of c?.delta.tool_calls ?? []) {
        t.equal(call.index, 0)
        id ??= call.id
        name += call.function?.name ?? ''
        args += call.function?.arguments ?? ''
        deltas++
      }
      t.notOk(c?.delta.content, 'no content beside the call')
      if (c?.finish_reason) finish = c.finish_reason
    }
    t.match(id, /^call_/)
    t.equal(name, 'search')
    t.equal(args, expected?.arguments, 'the arguments, in pieces')
    t.equal(deltas, 6, 'the call\'s head, then five pieces of arguments')
    t.equal(finish, 'tool_calls')
    const chosen = await client.chat.completions.create({ model: 'm', messages, tools: [...tools, { type: 'function', function: { name: 'other' } }], tool_choice: { type: 'function', function: { name: 'other' } } })
    t.equal(chosen.choices[0].message.tool_calls?.[0].type === 'function' ? chosen.choices[0].message.tool_calls[0].function.name : '', 'other', 'tool_choice names the tool')
  })

  t.test('setReply overrides the content', async t => {
    fake.setReply(body => ({ summary: `custom ${body.model}`, bullets: ['a', 'b'] }))
    const res = await client.chat.completions.create({ model: 'm1', messages })
    t.same(JSON.parse(res.choices[0].message.content ?? ''), { summary: 'custom m1', bullets: ['a', 'b'] })
  })

  t.test('failNext 500, then healthy again', async t => {
    fake.failNext(1, { status: 500 })
    const err = await client.chat.completions.create({ model: 'm', messages }).catch(e => e)
    t.ok(err instanceof OpenAI.InternalServerError, 'InternalServerError')
    t.equal(err.status, 500)
    t.match(err.error, { type: 'server_error' })
    const ok = await client.chat.completions.create({ model: 'm', messages })
    t.equal(ok.choices[0].finish_reason, 'stop')
    t.equal(fake.calls, 2)
  })

  t.test('429 with Retry-After', async t => {
    fake.failNext(1, { status: 429, headers: { 'retry-after': '7' } })
    const err = await client.chat.completions.create({ model: 'm', messages }).catch(e => e)
    t.ok(err instanceof OpenAI.RateLimitError, 'RateLimitError')
    t.equal(err.status, 429)
    t.equal(err.headers.get('retry-after'), '7')
  })

  t.test('SDK retries honour Retry-After and are counted', async t => {
    fake.failNext(2, { status: 429, headers: { 'retry-after-ms': '10' } })
    const retrying = new OpenAI({ apiKey: 'test', baseURL: fake.baseURL, maxRetries: 2, timeout: 2000 })
    const res = await retrying.chat.completions.create({ model: 'm', messages })
    t.equal(res.choices[0].finish_reason, 'stop')
    t.equal(fake.calls, 3, 'two failures + one success')
    t.equal(fake.requests[2].headers['x-stainless-retry-count'], '2')
  })

  t.test('hang: the client times out, close() is not blocked', async t => {
    fake.setMode('hang')
    const started = Date.now()
    const err = await client.chat.completions.create({ model: 'm', messages }, { timeout: 300 }).catch(e => e)
    t.ok(err instanceof OpenAI.APIConnectionTimeoutError, 'APIConnectionTimeoutError')
    t.ok(Date.now() - started < 1500, 'timed out on the client side')
    t.equal(fake.calls, 1, 'the hanging request was counted')
    t.equal(fake.completed, 0)
  })

  t.test('error500 mode', async t => {
    fake.setMode('error500')
    const err = await client.chat.completions.create({ model: 'm', messages }).catch(e => e)
    t.equal(err.status, 500)
  })

  t.test('malformed and empty content', async t => {
    fake.setMode('malformed')
    const bad = await client.chat.completions.create({ model: 'm', messages })
    t.throws(() => JSON.parse(bad.choices[0].message.content ?? ''), 'content is not JSON')
    fake.setMode('empty')
    const empty = await client.chat.completions.create({ model: 'm', messages })
    t.equal(empty.choices[0].message.content, '')
  })

  t.test('latency', async t => {
    fake.setLatency(150)
    const started = Date.now()
    await client.chat.completions.create({ model: 'm', messages })
    t.ok(Date.now() - started >= 140, 'response delayed')
  })

  t.test('stream-cut: partial deltas, then a connection error', async t => {
    fake.setMode('stream-cut')
    const stream = await client.chat.completions.create({ model: 'm', messages, stream: true })
    let text = ''
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch(e => e)
    t.ok(err instanceof Error, `iteration fails (${err?.constructor?.name}: ${err?.message})`)
    t.ok(text.length > 0 && text.length < defaultContent({ messages }).length, 'got a prefix only')
  })

  t.test('stream-stall: chunks stop, the client aborts', async t => {
    fake.setMode('stream-stall')
    const ac = new AbortController()
    const stream = await client.chat.completions.create({ model: 'm', messages, stream: true }, { signal: ac.signal })
    let text = ''
    const timer = setTimeout(() => ac.abort(), 300)
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch(e => e)
    clearTimeout(timer)
    t.ok(text.length > 0 && text.length < defaultContent({ messages }).length, 'got a prefix only')
    t.ok(err instanceof Error || ac.signal.aborted, 'iteration ended by the abort')
  })

  t.test('unknown path: 404 in OpenAI format, counted separately', async t => {
    const res = await fetch(`${fake.baseURL}/nope`, { method: 'POST', body: '{}' })
    t.equal(res.status, 404)
    t.match(await res.json(), { error: { code: 'unknown_url', type: 'invalid_request_error' } })
    const err = await client.models.list().catch(e => e)
    t.ok(err instanceof OpenAI.NotFoundError, 'SDK sees NotFoundError')
    t.equal(fake.notFound, 2)
    t.equal(fake.calls, 0)
  })

  t.test('waitForCalls', async t => {
    const pending = client.chat.completions.create({ model: 'm', messages })
    await fake.waitForCalls(1, 2000)
    t.equal(fake.calls, 1)
    await pending
    await t.rejects(fake.waitForCalls(5, 50))
  })
})

t.test('close() destroys hanging and stalled requests', async t => {
  const fake = await startFakeOpenAI({ mode: 'hang' })
  const client = new OpenAI({ apiKey: 'test', baseURL: fake.baseURL, maxRetries: 0, timeout: 10_000 })
  const hanging = client.chat.completions.create({ model: 'm', messages }).catch(e => e)
  await fake.waitForCalls(1)
  fake.setMode('stream-stall')
  const stalled = client.chat.completions.create({ model: 'm', messages, stream: true })
    .then(async s => { for await (const chunk of s) t.ok(chunk, 'chunk before the stall') })
    .catch(e => e)
  await fake.waitForCalls(2)
  const started = Date.now()
  await fake.close()
  const [e1, e2] = await Promise.all([hanging, stalled])
  t.ok(Date.now() - started < 1000, 'close() and the clients finished quickly')
  t.ok(e1 instanceof OpenAI.APIConnectionError, 'hanging request failed with a connection error')
  t.ok(e2 instanceof Error, 'stalled stream failed')
})

t.test('in a process of its own, it names each call\'s caller from the base URL and reports what it saw', async t => {
  const fake = await startFakeOpenAIProcess()
  t.teardown(() => fake.close())
  for (const caller of ['i0', 'i1-restarted']) {
    const client = new OpenAI({ apiKey: 'test', baseURL: `${fake.origin}/${caller}/v1`, maxRetries: 0, timeout: 2000 })
    await client.chat.completions.create({ model: 'gpt-test', messages })
  }
  await new OpenAI({ apiKey: 'test', baseURL: `${fake.origin}/v1`, maxRetries: 0, timeout: 2000 }).chat.completions.create({ model: 'gpt-test', messages })
  const report = await fake.report()
  t.equal(report.calls, 3)
  t.same(report.requests.map(r => r.caller), ['i0', 'i1-restarted', undefined])
  t.ok(report.requests.every(r => r.prompt === messages[1].content && !r.abandoned))
})
