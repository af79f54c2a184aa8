import t from 'tap'
import { build, stack } from './helper.ts'

t.test('GET /admin: one page, one script, one stylesheet, all of this origin, under the strict CSP', async t => {
  const s = await stack(t)
  const app = await build(t, { env: s.env })

  const page = await app.inject('/admin')
  t.equal(page.statusCode, 200)
  t.equal(page.headers['content-type'], 'text/html; charset=utf-8')
  t.equal(page.headers['cache-control'], 'no-store')
  const csp = String(page.headers['content-security-policy'])
  const directive = (name: string) => csp.split(';').map(d => d.trim()).find(d => d.startsWith(name + ' '))
  t.equal(directive('script-src'), "script-src 'self'")
  t.equal(directive('style-src'), "style-src 'self'")
  t.equal(directive('script-src-attr'), "script-src-attr 'none'")
  t.equal(directive('connect-src'), "connect-src 'self'")
  t.equal(directive('frame-ancestors'), "frame-ancestors 'none'")
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.equal(page.headers['referrer-policy'], 'no-referrer')

  // Nothing inline that the CSP would block: every script has a src, no <style>, no style or on* attributes.
  const html = page.body
  const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map(m => m[1])
  t.same(scripts, [' src="/admin/app.js" defer'], 'one script, from /admin/app.js')
  t.notMatch(html, /<style\b/i)
  t.notMatch(html, /\sstyle\s*=/i)
  t.notMatch(html, /\son[a-z]+\s*=/i)
  t.notMatch(html, /https?:\/\//, 'no other origin (no CDN)')
  t.match(html, /<link rel="stylesheet" href="\/admin\/app.css">/)
  t.match(html, /<input id="token" type="password"/, 'the token is asked in a password field')
  t.notMatch(html, /<input[^>]*id="token"[^>]*name=/, 'the token field has no name: a form submit never carries it')

  for (const [url, type] of [['/admin/app.js', 'text/javascript; charset=utf-8'], ['/admin/app.css', 'text/css; charset=utf-8']]) {
    const res = await app.inject(url)
    t.equal(res.statusCode, 200, url)
    t.equal(res.headers['content-type'], type)
    t.equal(res.headers['cache-control'], 'no-cache')
    t.match(res.headers.etag, /^"[0-9a-f]{16}"$/)
    const again = await app.inject({ url, headers: { 'if-none-match': String(res.headers.etag) } })
    t.equal(again.statusCode, 304, `${url}: revalidated with its ETag`)
  }

  // The script never builds markup from strings, never evaluates code, never puts the token in a URL or a log.
  const js = (await app.inject('/admin/app.js')).body
  t.notMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/)
  t.notMatch(js, /console\.(log|info|warn|error|debug)/)
  t.notMatch(js, /localStorage/)
  t.match(js, /authorization: 'Bearer ' \+ token/)
  t.notMatch(js, /[?&](token|access_token|jwt)=/)

  // Not in the OpenAPI document, and not an admin API route (the page itself holds no data).
  const doc = (await app.inject('/documentation/json')).json() as { paths: Record<string, unknown> }
  t.notOk(Object.keys(doc.paths).some(p => p.startsWith('/admin')))
  t.equal((await app.inject('/admin/nothing-here.js')).statusCode, 404)
})
