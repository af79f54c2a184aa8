// Helpers of the rollout tests (test/rollout.test.ts, test/rollout-model.test.ts).
import type { FastifyInstance } from 'fastify'
import { bodyFor, type NarrativeBody } from '../helper.ts'

/** POST /api/narrative for body `i`: how it was answered, by which version and model, and how long it took. */
export const post = async (app: FastifyInstance, i: number, bodyOf: (n: number) => NarrativeBody = bodyFor): Promise<{ status: string, version: string, engine: string, ms: number }> => {
  const started = performance.now()
  const res = await app.inject({ method: 'POST', url: '/api/narrative', payload: bodyOf(i) })
  const body = res.json()
  if (res.statusCode !== 200) throw new Error(`request ${i} answered ${res.statusCode}: ${res.body}`)
  return { status: body.cache.status, version: body.version, engine: body.engine, ms: performance.now() - started }
}

/**
 * How far the busiest window of model calls goes over a token bucket's bound
 * (`perMinute`, with a one-second burst): a window of w ms may hold at most
 * burst + perMinute·w/60,000 calls. Windows shorter than `minWindowMs` count
 * as that long: a call reaches the stand-in some ms after its token was
 * taken, and that jitter bunches arrivals.
 */
export function worstExcess (at: number[], perMinute: number, minWindowMs: number): number {
  const sorted = [...at].sort((a, b) => a - b)
  const burst = perMinute / 60
  let worst = 0
  // One window per pair: calls i..j inside it.
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i; j < sorted.length; j++) worst = Math.max(worst, (j - i + 1) - (burst + perMinute * Math.max(minWindowMs, sorted[j] - sorted[i]) / 60_000))
  }
  return worst
}
