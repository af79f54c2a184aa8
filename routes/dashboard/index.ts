import type { FastifyPluginAsync } from 'fastify'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'

/** The page and its two files, served from memory; read once at start-up. */
const FILES = {
  '/admin': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/admin/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/admin/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' }
} as const

/**
 * Where public/admin is: beside routes/ when run from source, and beside
 * dist/ when run from the build (dist/routes/dashboard/index.js).
 */
const CANDIDATES = ['../../public/admin/', '../../../public/admin/']

interface Asset { body: Buffer, type: string, etag: string }

async function loadAssets (): Promise<Map<string, Asset> | Error> {
  let lastError: Error = new Error('no candidate directory')
  for (const dir of CANDIDATES) {
    try {
      const assets = new Map<string, Asset>()
      for (const [url, { file, type }] of Object.entries(FILES)) {
        const body = await readFile(new URL(dir + file, import.meta.url))
        assets.set(url, { body, type, etag: `"${createHash('sha1').update(body).digest('hex').slice(0, 16)}"` })
      }
      return assets
    } catch (err) {
      lastError = err as Error
    }
  }
  return lastError
}

/**
 * GET /admin: the admin dashboard, one HTML page with one script and one
 * stylesheet of this origin (public/admin), so it works under the strict CSP of
 * plugins/helmet.ts: no inline script or style, no CDN, no build step. The page
 * holds no data: it asks for an admin token and reads the admin API with it.
 */
const routes: FastifyPluginAsync = async (fastify) => {
  const assets = await loadAssets()
  if (assets instanceof Error) {
    fastify.log.error({ err: assets.message }, 'admin dashboard files (public/admin) not found: GET /admin answers 503')
  }

  // `/admin/` (with the slash people type) is the page too: it names its files by absolute paths.
  for (const path of [...Object.keys(FILES), '/admin/']) {
    const url = path === '/admin/' ? '/admin' : path
    fastify.get(path, { schema: { hide: true } }, async (request, reply) => {
      const asset = assets instanceof Error ? undefined : assets.get(url)
      if (asset === undefined) {
        return await reply.code(503).send({ statusCode: 503, code: 'NARR_DASHBOARD_MISSING', error: 'Service Unavailable', message: 'the admin dashboard files (public/admin) are missing from this deployment' })
      }
      if (url === '/admin') {
        // The page itself is never stored: it is the entry point of an authenticated tool.
        reply.header('Cache-Control', 'no-store')
      } else {
        reply.header('Cache-Control', 'no-cache')
        reply.header('ETag', asset.etag)
        if (request.headers['if-none-match'] === asset.etag) return await reply.code(304).send()
      }
      return await reply.type(asset.type).send(asset.body)
    })
  }
}

export default routes
