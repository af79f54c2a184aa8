import { hash as digest } from 'node:crypto'

/** Fields that never change the answer: how it is delivered, or who asked. */
export const DELIVERY_FIELDS: readonly string[] = ['stream', 'stream_options', 'user', 'metadata', 'store']

/**
 * Parameters at their documented defaults (OpenAI's chat completions API):
 * sending them or not gives the same answer, so they are dropped from the key.
 */
const DEFAULTS: Record<string, unknown> = {
  temperature: 1,
  top_p: 1,
  n: 1,
  presence_penalty: 0,
  frequency_penalty: 0,
  logit_bias: {},
  stop: null,
  seed: null,
  max_tokens: null,
  max_completion_tokens: null,
  logprobs: false,
  top_logprobs: null,
  response_format: { type: 'text' },
  tools: [],
  tool_choice: null,
  parallel_tool_calls: true
}

/** The same, as JSON: what a field is compared with. */
const DEFAULT_JSON = new Map(Object.entries(DEFAULTS).map(([name, value]) => [name, JSON.stringify(value)]))

/**
 * How deep arrays and objects may nest within a field (a field's own object
 * or array is level 1): generous for any real tool schema, and what bounds
 * every walk of the body after parsing (this one, the key's JSON, the
 * upstream's), so no body can exhaust the stack.
 */
export const MAX_NESTING = 64

/** A body the canonical form cannot be made of; `param` is where, in OpenAI's style (`messages[0].content`). */
export class ChatBodyError extends Error {
  override readonly name: string = 'ChatBodyError'
  readonly code: string
  readonly param: string

  constructor (message: string, code: string, param: string) {
    super(message)
    this.code = code
    this.param = param
  }
}

export interface CanonicalChat {
  /** Every field that changes the answer, object keys sorted at every depth. */
  canonical: Record<string, unknown>
  /** Fields left out of the key: delivery fields, and parameters sent at their defaults. */
  dropped: string[]
}

/**
 * The request as the key sees it (see DEFAULTS and DELIVERY_FIELDS); unknown
 * fields are kept. Throws ChatBodyError for a body nested deeper than
 * MAX_NESTING or holding a number that is not finite (JSON's 1e400 parses to
 * Infinity, which JSON.stringify would write as null), anywhere in it.
 */
export function canonicalChat (body: Record<string, unknown>): CanonicalChat {
  const canonical: Record<string, unknown> = {}
  const dropped: string[] = []
  const trail: Array<string | number> = []
  for (const name of Object.keys(body).sort()) {
    const value = body[name]
    if (value === undefined) continue
    // Delivery fields are checked too, though left out: no bad input is taken silently.
    trail.push(name)
    const canon = sorted(value, trail)
    trail.pop()
    const defaultJson = DEFAULT_JSON.get(name)
    if (DELIVERY_FIELDS.includes(name) || (defaultJson !== undefined && defaultJson === JSON.stringify(canon))) {
      dropped.push(name)
      continue
    }
    canonical[name] = canon
  }
  return { canonical, dropped }
}

/** `{prefix}:chat:v1:{tenant}:{sha256 of the canonical JSON}`. */
export function chatKey (prefix: string, scope: string, canonical: Record<string, unknown>): string {
  const hash = digest('sha256', JSON.stringify(canonical)).slice(0, 40)
  return `${prefix}:chat:v1:${scope}:${hash}`
}

/** A copy with object keys sorted; `trail` is the path to `value` (field name, then keys and indexes). */
function sorted (value: unknown, trail: Array<string | number>): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new ChatBodyError(`${pathOf(trail)} must be a finite number: this one is beyond what a double holds (about ±1.8e308)`, 'invalid_number', pathOf(trail))
  }
  if (value === null || typeof value !== 'object') return value
  if (trail.length > MAX_NESTING) {
    throw new ChatBodyError(`${pathOf(trail)} is nested more than ${MAX_NESTING} levels deep (arrays and objects); ${MAX_NESTING} is the limit`, 'nesting_too_deep', pathOf(trail))
  }
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length)
    for (let i = 0; i < value.length; i++) {
      trail.push(i)
      out[i] = sorted(value[i], trail)
      trail.pop()
    }
    return out
  }
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(value).sort()) {
    trail.push(k)
    out[k] = sorted((value as Record<string, unknown>)[k], trail)
    trail.pop()
  }
  return out
}

/** `messages[0].content`, `logit_bias["50256"]`: as OpenAI's errors name a parameter. */
export function pathOf (trail: ReadonlyArray<string | number>): string {
  let path = ''
  for (const part of trail) {
    if (typeof part === 'number') path += `[${part}]`
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) path += path === '' ? part : `.${part}`
    else path += `[${JSON.stringify(part)}]`
  }
  return path
}
