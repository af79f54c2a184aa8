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

export interface CanonicalChat {
  /** Every field that changes the answer, object keys sorted at every depth. */
  canonical: Record<string, unknown>
  /** Fields left out of the key: delivery fields, and parameters sent at their defaults. */
  dropped: string[]
}

/** The request as the key sees it (see DEFAULTS and DELIVERY_FIELDS); unknown fields are kept. */
export function canonicalChat (body: Record<string, unknown>): CanonicalChat {
  const canonical: Record<string, unknown> = {}
  const dropped: string[] = []
  for (const name of Object.keys(body).sort()) {
    const value = body[name]
    if (value === undefined) continue
    if (DELIVERY_FIELDS.includes(name) || (name in DEFAULTS && sameJson(value, DEFAULTS[name]))) {
      dropped.push(name)
      continue
    }
    canonical[name] = sorted(value)
  }
  return { canonical, dropped }
}

/** `{prefix}:chat:v1:{tenant}:{sha256 of the canonical JSON}`. */
export function chatKey (prefix: string, scope: string, canonical: Record<string, unknown>): string {
  const hash = digest('sha256', JSON.stringify(canonical)).slice(0, 40)
  return `${prefix}:chat:v1:${scope}:${hash}`
}

function sorted (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(value).sort()) out[k] = sorted((value as Record<string, unknown>)[k])
    return out
  }
  return value
}

function sameJson (a: unknown, b: unknown): boolean {
  return JSON.stringify(sorted(a)) === JSON.stringify(sorted(b))
}
