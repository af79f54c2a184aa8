/** USD per million tokens. */
export interface ModelPrice { input: number, output: number }

/** List prices used when MODEL_PRICES does not say otherwise. */
export const DEFAULT_MODEL_PRICES: Record<string, ModelPrice> = {
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  template: { input: 0, output: 0 }
}

export interface UsageByModel { model: string, promptTokens: number, completionTokens: number, generations: number }

export interface CostInputs {
  byModel: UsageByModel[]
  /** Requests answered in the period, from the cache or not. */
  totalRequests: number
  /** Generations of a key already paid for (the durable tier held it). Default 0. */
  repaidGenerations?: number
  periodDays: number
  redisMonthlyUsd: number
  /** Whether a Redis is used at all: with the in-process store there is none to pay for. */
  redisInUse: boolean
  prices: Record<string, ModelPrice>
}

export interface CostEstimate {
  /** What the model calls of the period cost. */
  openai: number
  /** Redis's share of its monthly price for the period; 0 when no Redis is used. */
  redis: number
  total: number
  /** What the same requests would have cost with one model call each. */
  withoutCache: number
  saved: number
  /** What the re-paid generations cost, at the average cost per call: included in `openai`, money a working cache would not have spent. */
  repaid: number
}

const round = (usd: number): number => Math.round(usd * 10_000) / 10_000

/**
 * The cost model: tokens times the model's price, plus Redis prorated over the
 * period when a Redis is used (the in-process store costs nothing extra). Without a cache every request is a model call at the period's average
 * cost per call. A model with no known price counts as gpt-4o, so an unknown
 * model is over-estimated rather than free.
 */
export function estimateCost (inputs: CostInputs): CostEstimate {
  let openai = 0
  let generations = 0
  for (const usage of inputs.byModel) {
    const price = inputs.prices[usage.model] ?? inputs.prices['gpt-4o'] ?? DEFAULT_MODEL_PRICES['gpt-4o']
    openai += (usage.promptTokens * price.input + usage.completionTokens * price.output) / 1_000_000
    generations += usage.generations
  }
  const perCall = generations === 0 ? 0 : openai / generations
  const withoutCache = perCall * inputs.totalRequests
  const redis = inputs.redisInUse ? inputs.redisMonthlyUsd * inputs.periodDays / 30 : 0
  const total = openai + redis
  const repaid = perCall * (inputs.repaidGenerations ?? 0)
  return { openai: round(openai), redis: round(redis), total: round(total), withoutCache: round(withoutCache), saved: round(withoutCache - total), repaid: round(repaid) }
}
