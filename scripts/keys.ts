import { parseArgs } from 'node:util'
import { withApp } from './with-app.ts'

const USAGE = `npm run keys -- create --name NAME [--tenant T] [--rate-limit N] [--budget USD] [--refresh]
npm run keys -- list
npm run keys -- revoke --id KEY_ID`

/**
 * API keys of /v1/chat/completions from the command line, on the database the
 * server uses (the same environment): create prints the key with its secret
 * (shown this once), list prints every key without secrets, revoke revokes one.
 * JSON on stdout; exit 0, or 1 with the reason on stderr.
 */
async function main (): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  const { values } = parseArgs({ args: rest, options: { name: { type: 'string' }, tenant: { type: 'string' }, 'rate-limit': { type: 'string' }, budget: { type: 'string' }, refresh: { type: 'boolean' }, id: { type: 'string' } } })
  if (command !== 'create' && command !== 'list' && command !== 'revoke') throw new Error(`the command is create, list or revoke:\n${USAGE}`)
  if (command === 'create' && (values.name === undefined || values.name.trim() === '' || values.name.length > 100 || [...values.name].some(c => c.charCodeAt(0) < 32 || c.charCodeAt(0) === 127))) throw new Error('--name is required (1 to 100 characters, no control characters)')
  if (values.tenant !== undefined && !/^[A-Za-z0-9_.-]{1,100}$/.test(values.tenant)) throw new Error('--tenant must be 1 to 100 letters, digits, _ . or -')
  const rateLimit = values['rate-limit'] === undefined ? undefined : Number(values['rate-limit'])
  if (rateLimit !== undefined && !(Number.isInteger(rateLimit) && rateLimit >= 0)) throw new Error('--rate-limit must be a whole number of calls a minute (0: only the server\'s limits)')
  const budget = values.budget === undefined ? undefined : Number(values.budget)
  if (budget !== undefined && !(Number.isFinite(budget) && budget >= 0)) throw new Error('--budget must be a number of dollars a month')
  if (command === 'revoke' && values.id === undefined) throw new Error('--id is required')

  await withApp(async (fastify, config) => {
    const keys = fastify.chat.apiKeys
    let out: unknown
    if (command === 'create') {
      const { key, secret } = await keys.create({ name: values.name as string, tenant: values.tenant, rateLimit: rateLimit ?? config.generationRateLimit, monthlyBudgetUsd: budget, refresh: values.refresh === true })
      out = { ...key, secret }
    } else if (command === 'list') {
      out = await keys.list()
    } else {
      if (!await keys.revoke(values.id as string)) throw new Error(`no live key has the id ${values.id as string}`)
      out = { revoked: values.id }
    }
    process.stdout.write(JSON.stringify(out) + '\n')
  })
}

main().catch(err => {
  process.stderr.write(`keys: ${(err as Error).message}\n`)
  process.exit(1)
})
