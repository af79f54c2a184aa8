import t from 'tap'
import { readFile } from 'node:fs/promises'
import { openapiDocument } from '../scripts/openapi-document.js'

t.test('openapi/openapi.json is what the app generates (run `npm run openapi` after changing a route)', async t => {
  const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
  const generated = await openapiDocument()
  t.equal(committed, generated)
  const doc = JSON.parse(generated)
  t.ok(doc.paths['/api/narrative'].post.requestBody, 'the narrative route documents its body')
  t.ok(doc.paths['/api/narrative'].post.responses['200'], 'and its 200 response')
  t.ok(doc.paths['/health'] && doc.paths['/ready'], 'operations routes are documented')
})
