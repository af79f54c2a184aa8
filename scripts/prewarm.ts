import { parseArgs } from 'node:util'
import { withApp } from './with-app.ts'
import { prewarmTop } from '../src/admin/prewarm-top.ts'
import { PERIOD_DAYS, type Period } from '../src/admin/pattern.ts'

/**
 * npm run prewarm -- --top 100 [--period 30d] [--concurrency 4]
 * For a nightly cron: builds the app from the same environment as the server
 * (without listening), warms the most requested profiles that are missing or
 * stale, prints { warmed, skipped, failed, refused } as JSON, and exits 0 (1 on error).
 */
async function main (): Promise<void> {
  const { values } = parseArgs({ options: { top: { type: 'string', default: '100' }, period: { type: 'string', default: '30d' }, concurrency: { type: 'string', default: '4' } } })
  const top = Number(values.top)
  const concurrency = Number(values.concurrency)
  if (!Number.isInteger(top) || top < 1 || top > 10_000) throw new Error('--top must be a whole number from 1 to 10000')
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) throw new Error('--concurrency must be a whole number from 1 to 32')
  if (!(values.period in PERIOD_DAYS)) throw new Error('--period must be 1d, 7d or 30d')
  await withApp(async fastify => {
    // The same checks as a request (schema, SYSTEMS, LOCALES, domain rules): a stored profile they refuse is counted, never built.
    const jobOf = fastify.narratives.storedJob.bind(fastify.narratives)
    const onRefused = (key: string, reason: string): void => { fastify.log.warn({ key, reason }, 'pre-warm refused a stored profile') }
    const result = await prewarmTop({ warmer: fastify.narratives, analytics: fastify.db.analytics, jobOf, onRefused }, { top, period: values.period as Period, concurrency })
    process.stdout.write(JSON.stringify(result) + '\n')
  })
}

main().catch(err => {
  process.stderr.write(`prewarm: ${(err as Error).message}\n`)
  process.exit(1)
})
