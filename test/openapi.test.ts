import t from 'tap'
import { readFile } from 'node:fs/promises'
import { openapiDocument } from '../scripts/openapi-document.ts'

t.test('openapi/openapi.json is what the app generates (run `npm run openapi` after changing a route)', async t => {
  const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')
  const generated = await openapiDocument()
  t.equal(committed, generated)
  const doc = JSON.parse(generated)
  t.ok(doc.paths['/api/narrative'].post.requestBody, 'the narrative route documents its body')
  t.ok(doc.paths['/api/narrative'].post.responses['200'], 'and its 200 response')
  t.ok(doc.paths['/health'] && doc.paths['/ready'], 'operations routes are documented')
})

t.test('the document is one that generators and linters accept', async t => {
  const doc = JSON.parse(await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8'))
  t.ok(doc.info.license?.name, 'info.license')
  t.ok(Array.isArray(doc.servers) && doc.servers.length > 0, 'servers')
  t.same(Object.keys(doc.components.schemas.Error.properties).sort(), ['code', 'error', 'message', 'statusCode'], 'one shared Error schema')
  t.ok(doc.components.schemas.Error.examples.length >= 3, 'with examples')
  const ids: string[] = []
  for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(operations)) {
      const name = `${method.toUpperCase()} ${path}`
      t.match(op.operationId, /^[a-z][A-Za-z]+$/, `${name}: operationId ${op.operationId}`)
      ids.push(op.operationId)
      t.ok(Array.isArray(op.security), `${name}: security stated (${JSON.stringify(op.security)})`)
      if (path.startsWith('/api/narrative/') || path.startsWith('/api/keys') || path.startsWith('/api/tenants')) t.same(op.security, [{ bearerAuth: [] }], `${name}: the bearer scheme`)
      else if (path.startsWith('/v1/')) t.same(op.security, [{ apiKey: [] }], `${name}: an API key`)
      else t.same(op.security, [], `${name}: public`)
      for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
        t.ok(response.description !== undefined && response.description !== 'Default Response', `${name} ${status}: described (${response.description})`)
        if (Number(status) >= 400 && !(path === '/ready' && status === '503')) {
          t.same(Object.keys(response.content), ['application/json'], `${name} ${status}: a JSON error`)
          const shared = path.startsWith('/v1/') ? 'OpenAIError' : 'Error'
          t.same(response.content['application/json'].schema, { $ref: `#/components/schemas/${shared}` }, `${name} ${status}: the shared ${shared} schema`)
        }
      }
    }
  }
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  t.same(ids.sort(), ['createApiKey', 'createChatCompletion', 'deleteUserData', 'explainChatCache', 'getAnalytics', 'getAuditLog', 'getHistory', 'getNarrative', 'getRollout', 'getStats', 'health', 'invalidateCache', 'listApiKeys', 'listModels', 'metrics', 'pauseRollout', 'prewarm', 'ready', 'resumeRollout', 'revokeApiKey', 'setTenantSharing'])
  // One media type on the narrative's 200: a generated client types the answer as the JSON body, not as a string.
  t.same(Object.keys(doc.paths['/api/narrative'].post.responses['200'].content), ['application/json'])
  t.ok(doc.paths['/api/narrative'].post['x-event-stream'], 'the event stream is still documented, in an extension')
})
