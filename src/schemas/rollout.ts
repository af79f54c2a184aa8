import { Type, type Static } from '@sinclair/typebox'

const PrewarmRunSchema = Type.Object({
  firing: Type.Integer({ description: 'the firing\'s scheduled time, ms since the epoch (the same on every instance)' }),
  startedAt: Type.Integer(),
  endedAt: Type.Optional(Type.Integer()),
  takenOver: Type.Boolean({ description: 'this instance took the firing over from a holder that stopped renewing its lease' }),
  result: Type.Optional(Type.Object({
    warmed: Type.Integer(), skipped: Type.Integer(), failed: Type.Integer(), refused: Type.Integer(), budgetLeft: Type.Integer()
  })),
  error: Type.Optional(Type.String())
})

export const RolloutStatusSchema = Type.Object({
  mode: Type.Union([Type.Literal('gradual'), Type.Literal('immediate')], { description: 'ROLLOUT' }),
  active: Type.String({ description: 'PROMPT_VERSION: the version that writes every key (but the canary\'s)' }),
  model: Type.String({ description: 'OPENAI_MODEL: the model that writes every key (part of the key), or "template" without one' }),
  canary: Type.Union([Type.Object({ version: Type.String(), percent: Type.Number() }), Type.Null()], { description: 'PROMPT_CANARY' }),
  previous: Type.Array(Type.String(), { description: 'the other versions, newest first: where an earlier answer is looked for' }),
  previousModels: Type.Array(Type.String(), { description: 'the other models that have written entries here, most recent first: their entries answer (stale) while today\'s model writes its own' }),
  paused: Type.Boolean({ description: 'background writes paused, fleet-wide' }),
  ratePerMinute: Type.Integer({ description: 'ROLLOUT_RATE: background model calls per minute, fleet-wide' }),
  hotKeys: Type.Object({
    sampled: Type.Integer({ description: 'how many of the most requested keys (7 days) were looked at' }),
    onVersion: Type.Object({}, { additionalProperties: Type.Integer({ minimum: 0 }), description: 'how many of them each version answers now (whatever the model)' }),
    onModel: Type.Object({}, { additionalProperties: Type.Integer({ minimum: 0 }), description: 'how many of them each model\'s entries answer now (whatever the version)' }),
    none: Type.Integer({ description: 'how many no version has an entry for' })
  }),
  remaining: Type.Integer({ description: 'hot keys still answered by an earlier writer than theirs: another version, another model, or both' }),
  expectedSecondsToFinish: Type.Integer({ description: 'remaining at ROLLOUT_RATE' }),
  done: Type.Boolean(),
  queued: Type.Integer({ description: 'keys queued for a background write on this instance' }),
  counters: Type.Object({
    earlierAnswers: Type.Integer(), written: Type.Integer(), skipped: Type.Integer(), failed: Type.Integer(), throttled: Type.Integer()
  }, { description: 'this instance\'s rollout since it started' }),
  prewarm: Type.Union([Type.Object({
    schedule: Type.String({ description: 'PREWARM_SCHEDULE' }),
    maxCalls: Type.Integer({ description: 'PREWARM_MAX_CALLS' }),
    nextRunAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    running: Type.Union([PrewarmRunSchema, Type.Null()]),
    runs: Type.Array(PrewarmRunSchema, { description: 'the last runs on this instance, newest first' })
  }), Type.Null()], { description: 'the scheduled pre-warm, when PREWARM_SCHEDULE is set' })
})
export type RolloutStatusBody = Static<typeof RolloutStatusSchema>

export const RolloutPausedSchema = Type.Object({ paused: Type.Boolean() })
