import t from 'tap'
import type { AddressInfo } from 'node:net'
import { build, stack, type NarrativeBody } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { openBrowser } from './support/browser.ts'
import { waitUntil } from './support/wait.ts'

const JWT_SECRET = 'browser-dashboard-secret-0123456789abcdef'

function body (primary: string, n = 0): NarrativeBody {
  return { profile: { classification: 'primary', primary, percentages: { [primary]: 40 + n, Pleiades: 10 } }, locale: 'en', userId: `u-${primary}` }
}

t.test('GET /admin: a bad token is refused with its reason, a good one shows live figures that match the API; the token never reaches a URL', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET }, listen: true })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const token = mintAdminToken(JWT_SECRET, 'dashboard-admin', 600)
  const asAdmin = async (path: string) => {
    const res = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } })
    t.equal(res.status, 200, `GET ${path}`)
    return await res.json() as Record<string, any>
  }
  const narrative = async (b: NarrativeBody) => {
    const res = await fetch(base + '/api/narrative', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) })
    t.equal(res.status, 200)
    return res.headers.get('x-cache')
  }

  // Traffic: Vega 4 times (1 miss, 3 hits), Sirius twice (1 miss, 1 hit), Arcturus once (a miss).
  const statuses = []
  for (const b of [body('Vega'), body('Vega'), body('Sirius'), body('Vega'), body('Arcturus'), body('Sirius'), body('Vega')]) statuses.push(await narrative(b))
  t.same(statuses, ['MISS', 'HIT', 'MISS', 'HIT', 'MISS', 'HIT', 'HIT'])
  // Analytics are written in batches, every second.
  await waitUntil(async () => (await asAdmin('/api/narrative/analytics?period=7d')).totalRequests === 7, { timeoutMs: 10_000, what: 'analytics written' })

  const { page, requests, console: messages, screenshot } = await openBrowser(t)
  const response = await page.goto(`${base}/admin?refresh=1`)
  t.equal(response?.status(), 200)
  const headers = response!.headers()
  t.match(headers['content-type'], /^text\/html/)
  t.equal(headers['cache-control'], 'no-store')
  const csp = headers['content-security-policy']
  t.match(csp, /script-src 'self'(;|$)/, 'scripts from this origin only')
  t.match(csp, /style-src 'self'(;|$)/, 'styles from this origin only')
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)

  // The public /ready figures show before any token.
  await page.locator('#ready-redis[data-state="ok"]').waitFor()
  t.equal(await page.locator('#ready-redis').textContent(), 'redis up')
  t.equal(await page.locator('#ready-breaker').textContent(), 'breaker closed')

  const signIn = async (value: string) => {
    await page.fill('#token', value)
    await page.click('#sign-in')
  }
  const refused = async (value: string, status: RegExp, what: string) => {
    await signIn(value)
    await page.locator('#login-error').filter({ hasText: status }).waitFor()
    t.ok(await page.locator('#login').isVisible(), `${what}: still asking for a token`)
    t.notOk(await page.locator('#dashboard').isVisible(), `${what}: no dashboard`)
    t.equal(await page.locator('#stat-hit-rate').getAttribute('data-value'), '', `${what}: no data`)
    t.equal(await page.locator('#token').inputValue(), '', `${what}: the field is emptied`)
  }
  await refused('not-a-token', /^401 Unauthorized/, 'garbage')
  await refused(mintAdminToken('another-secret-0123456789abcdef-000000', 'mallory', 600), /^401 Unauthorized/, 'another secret')
  const viewer = mintAdminToken(JWT_SECRET, 'viewer', 600, 'viewer')
  await refused(viewer, /^403 Forbidden/, 'no admin role')
  await screenshot('dashboard-refused')

  // The right token: live figures, equal to what the API says.
  await signIn(token)
  await page.locator('#dashboard').waitFor()
  await page.locator('#stat-hit-rate:not([data-value=""])').waitFor()
  const stats = await asAdmin('/api/narrative/stats')
  const analytics = await asAdmin('/api/narrative/analytics?period=7d')
  t.equal(stats.hitRate, 0.5714, '4 cached answers of 7')
  t.equal(Number(await page.locator('#stat-hit-rate').getAttribute('data-value')), stats.hitRate)
  t.equal(await page.locator('#stat-hit-rate').textContent(), '57.1%')
  t.equal(await page.locator('#stat-answered').textContent(), '7')
  // The fleet: this instance alone here, its row and the sum.
  await page.locator('#fleet-summary[data-instances="1"]').waitFor()
  t.equal(await page.locator('#fleet-rows tr').count(), 2, 'one instance and the sum')
  t.match(await page.locator('#fleet-rows tr.self').textContent(), /\(this one\)/)
  t.equal(await page.locator('#stat-hits').textContent(), '4')
  t.equal(await page.locator('#stat-misses').textContent(), '3')
  t.equal(await page.locator('#stat-store').textContent(), 'redis')

  t.same(analytics.topSystems, [{ system: 'Vega', count: 4 }, { system: 'Sirius', count: 2 }, { system: 'Arcturus', count: 1 }])
  const bars = await page.locator('#top-systems-chart g.bar').evaluateAll(gs => gs.map(g => ({
    system: g.getAttribute('data-system'),
    count: Number(g.getAttribute('data-count')),
    width: Number(g.querySelector('rect')?.getAttribute('width')),
    label: g.querySelector('text.label')?.textContent
  })))
  t.same(bars.map(b => ({ system: b.system, count: b.count })), analytics.topSystems, 'one bar per top system, in order, with the API\'s counts')
  t.same(bars.map(b => b.label), ['Vega', 'Sirius', 'Arcturus'])
  t.ok(bars[0].width > bars[1].width && bars[1].width > bars[2].width, 'bars proportional to the counts')
  t.ok(Math.abs(bars[0].width / bars[1].width - 2) < 0.01, 'Vega\'s bar is twice Sirius\'s')

  const cost = analytics.estimatedCost
  t.ok(cost.saved !== 0 && cost.withoutCache > 0, 'the fake model has a price, so the cost model has figures')
  t.equal(Number(await page.locator('#cost-saved').getAttribute('data-value')), cost.saved)
  t.equal(Number(await page.locator('#cost-without').getAttribute('data-value')), cost.withoutCache)
  t.equal(Number(await page.locator('#cost-total').getAttribute('data-value')), cost.total)
  t.match(await page.locator('#cost-saved').textContent(), /^-?\$\d+\.\d+$/)
  // Re-paid generations (issue 17): the count and its cost, in the cost section.
  t.equal(Number(await page.locator('#cost-repaid').getAttribute('data-value')), cost.repaid)
  t.equal(Number(await page.locator('#cost-repaid').getAttribute('data-count')), analytics.repaidGenerations)
  t.match(await page.locator('#cost-repaid').textContent(), /^\d+ \(\$\d+\.\d+\)$/)
  t.equal(await page.locator('#an-total').textContent(), '7')

  // The hit-rate chart accumulates samples in the page: more hits move it.
  await waitUntil(async () => Number(await page.locator('#hit-rate-chart').getAttribute('data-samples')) >= 2, { timeoutMs: 10_000, what: 'two samples' })
  for (let i = 0; i < 3; i++) t.equal(await narrative(body('Vega')), 'HIT')
  const later = await asAdmin('/api/narrative/stats')
  t.equal(later.hitRate, 0.7, '7 cached answers of 10')
  await page.locator('#hit-rate-last', { hasText: '70.0%' }).waitFor()
  t.equal(Number(await page.locator('#hit-rate-chart').getAttribute('data-last')), later.hitRate)
  t.equal(await page.locator('#stat-hit-rate').textContent(), '70.0%')
  const points = await page.locator('#hit-rate-chart polyline.total').getAttribute('points')
  t.ok(points !== null && points.split(' ').length >= 3, 'a line through the samples')
  t.ok(await page.locator('#hit-rate-chart .interval').count() > 0, 'the hit rate between samples (3 hits: 100%) is drawn too')
  await page.locator('#top-systems-chart g.bar[data-system="Vega"][data-count="7"]').waitFor()
  t.equal(await page.locator('#ready-breaker').textContent(), 'breaker closed')
  await screenshot('dashboard')

  // The token travelled in the Authorization header only: never in a URL, never stored.
  const urls = requests.map(r => r.url())
  const apiCalls = requests.filter(r => r.url().includes('/api/narrative/'))
  t.ok(apiCalls.length >= 4, 'the page called the admin API')
  for (const r of apiCalls) {
    const auth = r.headers().authorization
    if (auth !== `Bearer ${token}`) t.match(auth, /^Bearer (not-a-token|ey)/, 'refused tokens only were sent otherwise')
  }
  for (const secret of [token, token.split('.')[2], viewer.split('.')[2], 'not-a-token']) {
    t.notOk(urls.some(u => u.includes(secret)), 'no token in any requested URL')
  }
  t.ok(urls.every(u => u.startsWith(base + '/')), 'nothing requested from another origin (no CDN)')
  t.same(await page.evaluate(() => { const w = globalThis as any; return { session: w.sessionStorage.length, local: w.localStorage.length, cookie: w.document.cookie } }), { session: 0, local: 0, cookie: '' }, 'not stored anywhere unless asked')
  t.same(messages.filter(m => /Content Security Policy|pageerror/i.test(m)), [], 'no CSP violation, no page error')

  // "Keep it for this tab": session storage only, and a reload signs in again; signing out forgets it.
  await page.click('#sign-out')
  await page.locator('#login').waitFor()
  t.equal(await page.locator('#stat-hit-rate').getAttribute('data-value'), '', 'signing out clears the figures')
  await page.check('#remember')
  await signIn(token)
  await page.locator('#dashboard').waitFor()
  t.equal(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('narrative-admin-token')), token)
  await page.reload()
  await page.locator('#stat-hit-rate:not([data-value=""])').waitFor()
  t.equal(await page.locator('#stat-hit-rate').textContent(), '70.0%', 'signed in again from session storage')
  await page.click('#sign-out')
  t.equal(await page.evaluate(() => (globalThis as any).sessionStorage.length), 0, 'signing out forgets it')
  t.notOk(requests.map(r => r.url()).some(u => u.includes(token.split('.')[2])), 'still no token in any URL')
})
