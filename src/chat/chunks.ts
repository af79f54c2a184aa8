/**
 * A chat completion as it streams: the `data:` payloads of its Server-Sent
 * Events, each a `chat.completion.chunk` object, in order (without the final
 * `[DONE]`). Stored as they came, replayed with the same boundaries, and
 * assembled into the `chat.completion` a JSON request gets.
 */
export type ChunkList = string[]

interface ToolCallDelta { index: number, id?: string, type?: string, function?: { name?: string, arguments?: string } }
interface ChoiceDelta {
  index: number
  delta?: { role?: string, content?: string | null, refusal?: string | null, tool_calls?: ToolCallDelta[] }
  finish_reason?: string | null
  logprobs?: unknown
}
interface Chunk {
  id?: string
  created?: number
  model?: string
  system_fingerprint?: string | null
  service_tier?: string | null
  choices?: ChoiceDelta[]
  usage?: unknown
}

/** True for the chunk that only carries usage (choices empty), sent when include_usage was asked. */
export function isUsageChunk (data: string): boolean {
  try {
    const chunk = JSON.parse(data) as Chunk
    return Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage !== undefined && chunk.usage !== null
  } catch {
    return false
  }
}

/** The usage the stream reported, if any. */
export function usageOf (chunks: ChunkList): { prompt_tokens?: number, completion_tokens?: number } | undefined {
  for (let i = chunks.length - 1; i >= 0; i--) {
    const usage = (JSON.parse(chunks[i]) as Chunk).usage
    if (usage !== undefined && usage !== null) return usage as { prompt_tokens?: number, completion_tokens?: number }
  }
  return undefined
}

/** The `chat.completion` object the API would have answered a JSON request with. */
export function assembleCompletion (chunks: ChunkList): Record<string, unknown> {
  let head: Chunk = {}
  let usage: unknown = null
  const choices = new Map<number, { role: string, content: string | null, refusal: string | null, toolCalls: Map<number, { id?: string, type: string, function: { name: string, arguments: string } }>, finish: string | null, logprobs: unknown }>()
  for (const data of chunks) {
    const chunk = JSON.parse(data) as Chunk
    if (head.id === undefined) head = chunk
    if (chunk.usage !== undefined && chunk.usage !== null) usage = chunk.usage
    for (const c of chunk.choices ?? []) {
      let choice = choices.get(c.index)
      if (choice === undefined) {
        choice = { role: 'assistant', content: null, refusal: null, toolCalls: new Map(), finish: null, logprobs: null }
        choices.set(c.index, choice)
      }
      const d = c.delta ?? {}
      if (typeof d.role === 'string') choice.role = d.role
      if (typeof d.content === 'string') choice.content = (choice.content ?? '') + d.content
      if (typeof d.refusal === 'string') choice.refusal = (choice.refusal ?? '') + d.refusal
      for (const t of d.tool_calls ?? []) {
        let call = choice.toolCalls.get(t.index)
        if (call === undefined) {
          call = { type: 'function', function: { name: '', arguments: '' } }
          choice.toolCalls.set(t.index, call)
        }
        if (t.id !== undefined) call.id = t.id
        if (t.type !== undefined) call.type = t.type
        if (t.function?.name !== undefined) call.function.name += t.function.name
        if (t.function?.arguments !== undefined) call.function.arguments += t.function.arguments
      }
      if (c.finish_reason !== undefined && c.finish_reason !== null) choice.finish = c.finish_reason
      if (c.logprobs !== undefined && c.logprobs !== null) choice.logprobs = c.logprobs
    }
  }
  return {
    id: head.id,
    object: 'chat.completion',
    created: head.created,
    model: head.model,
    ...(head.service_tier !== undefined ? { service_tier: head.service_tier } : {}),
    system_fingerprint: head.system_fingerprint ?? null,
    choices: [...choices.entries()].sort(([a], [b]) => a - b).map(([index, c]) => ({
      index,
      message: {
        role: c.role,
        content: c.content,
        refusal: c.refusal,
        ...(c.toolCalls.size > 0 ? { tool_calls: [...c.toolCalls.entries()].sort(([a], [b]) => a - b).map(([, call]) => call) } : {})
      },
      logprobs: c.logprobs,
      finish_reason: c.finish
    })),
    usage
  }
}

/** An SSE event for a chunk. */
export function sseEvent (data: string): string {
  return `data: ${data}\n\n`
}

export const SSE_DONE = 'data: [DONE]\n\n'
