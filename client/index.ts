import createClient, { type Client, type Middleware } from 'openapi-fetch'
import type { components, operations, paths } from './openapi.js'

export type { components, operations, paths }
/** The JSON answer of POST /api/narrative. */
export type NarrativeAnswer = operations['getNarrative']['responses'][200]['content']['application/json']
/** The body of POST /api/narrative. */
export type NarrativeRequest = operations['getNarrative']['requestBody']['content']['application/json']
/** The body of every error answer (4xx, 5xx). */
export type ApiError = components['schemas']['Error']

export interface NarrativeClientOptions {
  /** Where the server is, e.g. http://localhost:3000 (the default). */
  baseUrl?: string
  /** An admin token (`npm run token -- --sub you`), sent as `Authorization: Bearer …` to the admin routes. */
  adminToken?: string
  /** Another fetch (tests, proxies); the global one by default. */
  fetch?: typeof globalThis.fetch
}

/**
 * A typed client of every route in openapi/openapi.json: `client.POST('/api/narrative', { body })`
 * gives `{ data, error, response }` with `data` typed as the JSON answer and `error` as the Error body.
 * The types are generated (`npm run client:generate`); this wrapper only sets the base URL and the token.
 */
export function createNarrativeClient (options: NarrativeClientOptions = {}): Client<paths> {
  const client = createClient<paths>({ baseUrl: options.baseUrl ?? 'http://localhost:3000', fetch: options.fetch })
  const token = options.adminToken
  if (token !== undefined) {
    const bearer: Middleware = {
      onRequest ({ request, schemaPath }) {
        // Only the admin routes take the token: it is never sent where it is not needed.
        if (schemaPath.startsWith('/api/narrative/')) request.headers.set('authorization', `Bearer ${token}`)
        return request
      }
    }
    client.use(bearer)
  }
  return client
}
