// A short example of the typed client: tsx client/example.ts [BASE_URL]
// (with `npm start` running; ADMIN_TOKEN=$(npm run -s token -- --sub you) adds the admin stats).
import { createNarrativeClient } from './index.js'

const baseUrl = process.argv[2] ?? process.env.NARRATIVE_URL ?? 'http://localhost:3000'
const client = createNarrativeClient({ baseUrl, adminToken: process.env.ADMIN_TOKEN })

const health = await client.GET('/health')
console.log('health:', health.data?.status)

const { data, error, response } = await client.POST('/api/narrative', {
  body: { profile: { classification: 'primary', primary: 'Vega', percentages: { Vega: 50, Sirius: 20 } }, locale: 'en' }
})
if (error !== undefined) {
  // `error` is the Error body: statusCode, code, error, message.
  console.error(`narrative refused: ${error.statusCode} ${error.code}: ${error.message}`)
  process.exit(1)
}
// `data` is the JSON answer, typed: no cast.
console.log(`narrative (${data.cache.status}, X-Cache ${response.headers.get('x-cache')}, key ${data.cache.key}):`)
console.log(`  ${data.narrative.summary}`)
for (const bullet of data.narrative.bullets) console.log(`  - ${bullet}`)

if (process.env.ADMIN_TOKEN !== undefined) {
  const stats = await client.GET('/api/narrative/stats')
  if (stats.error !== undefined) console.error(`stats refused: ${stats.error.message}`)
  else console.log(`stats: hit rate ${stats.data.hitRate}, ${stats.data.misses} misses, store ${stats.data.store}`)
}
