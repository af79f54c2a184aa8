/** The admin route that deletes a user, whose last path segment is the user id. */
export const USER_PATH = '/api/narrative/user/'

/** A % that starts no %XX escape. */
const STRAY_PERCENT = /%(?![0-9A-Fa-f]{2})/g

/**
 * Fastify's rewriteUrl, for DELETE /api/narrative/user/:userId only: a `%`
 * that starts no %XX escape is taken as itself, as the WHATWG URL standard
 * decodes it, instead of failing the whole URL with 400 before routing. So
 * the user `%` (or `100%`) is deleted as `/user/%` as well as `/user/%25`;
 * `%41` still means `A`, as in every URL. Other routes see their URL untouched.
 */
export function lenientUserPath (req: { url?: string }): string {
  const url = req.url ?? '/'
  if (!url.startsWith(USER_PATH) || !url.includes('%')) return url
  const query = url.indexOf('?')
  const path = query === -1 ? url : url.slice(0, query)
  return path.replace(STRAY_PERCENT, '%25') + (query === -1 ? '' : url.slice(query))
}
