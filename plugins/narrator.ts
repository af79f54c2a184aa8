import fp from 'fastify-plugin'
import { OpenAINarrator } from '../src/narrator/openai-narrator.ts'
import { TemplateNarrator, type Narrator } from '../src/narrator/narrator.ts'

declare module 'fastify' {
  interface FastifyInstance {
    narrator: Narrator
  }
}

export interface NarratorPluginOptions {
  /** Replaces the configured narrator (tests, benchmarks). */
  narrator?: Narrator
}

/** The model when OPENAI_API_KEY is set, the deterministic template otherwise. */
export default fp<NarratorPluginOptions>(async (fastify, opts) => {
  const { openai } = fastify.config
  let narrator: Narrator
  if (opts.narrator !== undefined) {
    narrator = opts.narrator
  } else if (openai.apiKey !== undefined) {
    narrator = new OpenAINarrator({ apiKey: openai.apiKey, baseURL: openai.baseURL, model: openai.model, timeoutMs: openai.timeoutMs })
  } else {
    narrator = new TemplateNarrator()
  }
  fastify.log.info({ narrator: narrator.engine, baseURL: openai.baseURL }, 'narrator ready')
  fastify.decorate('narrator', narrator)
  fastify.metrics.provide({ narrator: () => narrator.counters })
}, { name: 'narrator', dependencies: ['config', 'metrics'] })
