import t from 'tap'
import type { AddressInfo } from 'node:net'
import type { Page } from 'playwright-core'
import { build, stack, type NarrativeBody } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { openBrowser } from './support/browser.ts'
import { waitUntil } from './support/wait.ts'

const JWT_SECRET = 'browser-dashboard-actions-secret-0123456789'
const STATUSES = ['hit', 'stale', 'durable', 'miss', 'fallback', 'error', 'refused'] as const

function body (primary: string): NarrativeBody {
  return { profile: { classification: 'primary', primary, percentages: { [primary]: 40, Pleiades: 10 } }, locale: 'en', userId: `u-${primary}` }
}

t.test('/admin: history from the analytics (surviving a reload), each action confirmed or cancelled, the audit log, phone width', async t => {
  const s = await stack(t)
  const app = await build(t, { env: { ...s.env, JWT_SECRET }, listen: true })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const token = mintAdminToken(JWT_SECRET, 'dash-admin', 600)
  const asAdmin = async (path: string): Promise<Record<string, any>> => {
    const res = await fetch(base + path, { headers: { authorization: `Bearer ${token}` } })
    t.equal(res.status, 200, `GET ${path}`)
    return await res.json() as Record<string, any>
  }
  const narrative = async (b: object): Promise<string | null> => {
    const res = await fetch(base + '/api/narrative', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) })
    return res.status === 200 ? res.headers.get('x-cache') : String(res.status)
  }

  // Vega 3 times (1 miss, 2 hits), Sirius once (a miss), and one refusal of the domain rules.
  const answers = []
  for (const b of [body('Vega'), body('Vega'), body('Sirius'), body('Vega'), { profile: { classification: 'primary', primary: 'Vega', percentages: { Sirius: 1 } } }]) answers.push(await narrative(b))
  t.same(answers, ['MISS', 'HIT', 'MISS', 'HIT', '400'])
  await waitUntil(async () => (await app.db.analytics.summary(0)).totalRequests === 5, { timeoutMs: 10_000, what: 'analytics written' })

  const { page, console: messages, screenshot } = await openBrowser(t)
  await page.goto(`${base}/admin?refresh=2`)
  await page.check('#remember')
  await page.fill('#token', token)
  await page.click('#sign-in')
  await page.locator('#dashboard').waitFor()

  // ---- history: the API's figures, drawn, and the same after a reload
  const history = await asAdmin('/api/narrative/history?minutes=60')
  const totals = Object.fromEntries(STATUSES.map(k => [k, history.buckets.reduce((n: number, b: Record<string, number>) => n + b[k], 0)]))
  t.match(totals, { hit: 2, miss: 2, refused: 1, error: 0 })
  const shown = async (): Promise<Record<string, number>> => Object.fromEntries(await Promise.all(STATUSES.map(async k => [k, Number(await page.locator(`#hist-${k}`).getAttribute('data-value'))])))
  await page.locator('#history-chart[data-total="5"]').waitFor()
  t.same(await shown(), totals, 'the legend\'s totals are the API\'s')
  t.equal(await page.locator('#history-chart').getAttribute('data-buckets'), '60')
  t.equal(await page.locator('#history-chart rect.s-refused').count(), 1, 'the refused request is drawn, in its own colour')
  t.equal(Number(await page.locator('#hist-generations').getAttribute('data-value')), 2)
  t.ok(Number(await page.locator('#latency-chart').getAttribute('data-points')) >= 1, 'model-call latency drawn')
  t.ok(await page.locator('#latency-chart circle.p95').count() >= 1)
  t.match(await page.locator('#history-note').textContent(), /model calls/)

  await page.reload()
  await page.locator('#history-chart[data-total="5"]').waitFor()
  t.same(await shown(), totals, 'after a reload the history is still there, read from the analytics tables')
  t.equal(await page.locator('#history-chart rect.s-miss').count() >= 1, true)

  // ---- actions: a dialog that says what will happen; cancel does nothing, confirm does it
  const dialogFor = async (button: string): Promise<string> => {
    await page.click(button)
    await page.locator('#confirm[open]').waitFor()
    return await page.locator('#confirm-text').textContent() ?? ''
  }
  const cancel = async (): Promise<void> => {
    await page.click('#confirm-cancel')
    await page.locator('#confirm:not([open])').waitFor({ state: 'attached' })
    await page.locator('#act-result[data-outcome="cancelled"]').waitFor()
  }
  const confirm = async (action: string): Promise<string> => {
    await page.click('#confirm-ok')
    await page.locator(`#act-result[data-action="${action}"][data-outcome="done"]`).waitFor()
    return await page.locator('#act-result').textContent() ?? ''
  }

  // Invalidate: cancelled, the entries stay; confirmed, they go.
  await page.fill('#act-pattern', '*')
  let text = await dialogFor('#act-invalidate')
  t.match(text, /matches "\*"/)
  t.match(text, /Redis, from PostgreSQL .* every instance's memory/)
  t.match(text, /cannot be undone/)
  t.match(await page.locator('#confirm-request').textContent(), /^DELETE \/api\/narrative\/cache\?pattern=\*$/)
  await cancel()
  t.equal(await narrative(body('Vega')), 'HIT', 'cancelled: still cached')
  await dialogFor('#act-invalidate')
  text = await confirm('invalidate')
  t.match(text, /^Invalidated [1-9]\d* cached entr(y|ies) and 2 durable rows matching t[^ ]*:\*\.$/)
  t.equal(await narrative(body('Vega')), 'MISS', 'confirmed: gone from every tier')

  // An error from the server is shown (the field's own check taken away so the server sees the bad pattern).
  await page.evaluate(() => { (globalThis as any).document.getElementById('act-pattern').removeAttribute('pattern') })
  await page.fill('#act-pattern', 'no spaces allowed')
  await dialogFor('#act-invalidate')
  await page.click('#confirm-ok')
  await page.locator('#act-error[data-action="invalidate"]').waitFor()
  t.match(await page.locator('#act-error').textContent(), /^Invalidate cached narratives failed: 400 Bad Request/)
  t.ok(await page.locator('#act-result').isHidden())

  // Pre-warm: Sirius is missing now; cancelled, no model call; confirmed, it is generated.
  const calls = s.openai.requests.length
  await page.fill('#act-top', '10')
  await page.selectOption('#act-period', '1d')
  text = await dialogFor('#act-prewarm')
  t.match(text, /The 10 most requested profiles of the 1 day before now .* up to 10 model calls/)
  await cancel()
  t.equal(s.openai.requests.length, calls, 'cancelled: no model call')
  await dialogFor('#act-prewarm')
  text = await confirm('prewarm')
  t.match(text, /^Pre-warm: 1 generated, 1 already fresh, 0 failed, 0 refused/)
  t.equal(s.openai.requests.length, calls + 1, 'confirmed: Sirius generated')
  t.equal(await narrative(body('Sirius')), 'HIT')

  // Forget a user: cancelled, their rows stay; confirmed, they go.
  await app.db.buffer.flush()
  t.ok((await app.db.analytics.keysOfUser('u-Vega')).length > 0)
  await page.fill('#act-user', 'u-Vega')
  text = await dialogFor('#act-forget')
  t.match(text, /analytics row of user "u-Vega" .* index of requested keys will be deleted/)
  t.match(text, /Cached narratives .* stay/)
  t.match(await page.locator('#confirm-request').textContent(), /^DELETE \/api\/narrative\/user\/u-Vega$/)
  await cancel()
  t.ok((await app.db.analytics.keysOfUser('u-Vega')).length > 0, 'cancelled: still there')
  await dialogFor('#act-forget')
  text = await confirm('forget')
  t.match(text, /^Forgot "u-Vega": [1-9]\d* analytics rows? and 1 index entry deleted\./)
  t.same(await app.db.analytics.keysOfUser('u-Vega'), [], 'confirmed: gone')
  // Escape closes the dialog as a cancel.
  await dialogFor('#act-forget')
  await page.keyboard.press('Escape')
  await page.locator('#act-result[data-outcome="cancelled"]').waitFor()
  await screenshot('dashboard-actions')

  // ---- the audit log: each action in it, newest first, paged
  for (let i = 0; i < 5; i++) await asAdmin('/api/narrative/stats') // more than a page of 20, whatever the polling did
  await waitUntil(async () => {
    const actions = await page.locator('#audit-rows tr td:nth-child(3)').allTextContents()
    return actions.length === 20 && actions.includes('DELETE /api/narrative/user/:userId') && actions.includes('POST /api/narrative/prewarm') && actions.includes('DELETE /api/narrative/cache')
  }, { timeoutMs: 10_000, what: 'the actions in the audit view' })
  const rows = await page.locator('#audit-rows tr').evaluateAll(trs => trs.map(tr => ({ id: Number(tr.getAttribute('data-id')), outcome: tr.getAttribute('data-outcome'), cells: [...tr.querySelectorAll('td')].map(td => td.textContent) })))
  t.equal(rows.length, 20, 'a page of 20')
  t.ok(rows.every((r, i) => i === 0 || r.id < rows[i - 1].id), 'newest first')
  const forget = rows.find(r => r.cells[2] === 'DELETE /api/narrative/user/:userId')
  t.match(forget, { outcome: 'allowed', cells: [/./, 'dash-admin', 'DELETE /api/narrative/user/:userId', '200 allowed', /./] })
  t.match(rows.find(r => r.cells[3] === '400 denied'), { cells: [/./, /./, 'DELETE /api/narrative/cache'] }, 'the refused invalidation too')
  const api = await asAdmin('/api/narrative/audit?limit=20')
  t.ok(api.entries.some((e: { id: number }) => e.id === forget?.id), 'the rows are the API\'s')
  await page.locator('#audit-older:not([disabled])').waitFor()
  await page.click('#audit-older')
  await page.locator('#audit-page', { hasText: /^older than #\d+$/ }).waitFor()
  const cursor = Number((await page.locator('#audit-page').textContent())?.replace(/\D/g, ''))
  const older = await page.locator('#audit-rows tr').evaluateAll(trs => trs.map(tr => Number(tr.getAttribute('data-id'))))
  t.ok(older.length > 0 && older.every(id => id < cursor), 'the older page holds the entries before the newest page\'s last')
  t.ok(await page.locator('#audit-newest').isEnabled())
  await page.click('#audit-newest')
  await page.locator('#audit-page', { hasText: 'newest' }).waitFor()

  // ---- phone width: nothing wider than the screen, tables scroll inside their cards
  await page.setViewportSize({ width: 375, height: 800 })
  await page.reload()
  await page.locator('#history-chart:not([data-total=""])').waitFor()
  await page.locator('#audit-rows tr').first().waitFor()
  const widths = async (p: Page): Promise<{ page: number, body: number, audit: { scroll: number, client: number }, fleet: { scroll: number, client: number } }> => await p.evaluate(() => {
    const d = (globalThis as any).document
    const box = (sel: string) => { const el = d.querySelector(sel).closest('.scroll'); return { scroll: el.scrollWidth, client: el.clientWidth } }
    return { page: d.documentElement.scrollWidth, body: d.body.scrollWidth, audit: box('#audit-table'), fleet: box('#fleet-table') }
  })
  const phone = await widths(page)
  t.ok(phone.page <= 375 && phone.body <= 375, `no horizontal page scroll at 375 px (${phone.page} px)`)
  t.ok(phone.audit.client <= 375 && phone.fleet.client <= 375, 'the tables\' cards fit')
  t.ok(phone.audit.scroll > phone.audit.client, 'the audit table scrolls inside its card')
  await page.fill('#act-user', 'u-Sirius')
  await dialogFor('#act-forget')
  const dialogBox = await page.locator('#confirm').boundingBox()
  t.ok(dialogBox !== null && dialogBox.x >= 0 && dialogBox.x + dialogBox.width <= 375, 'the dialog fits the screen')
  t.equal(await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth), 375, 'still no page scroll with the dialog open')
  await cancel()
  await screenshot('dashboard-phone')
  await page.click('#sign-out')
  await page.locator('#login').waitFor()
  t.ok((await widths(page).catch(() => null)) === null || await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth) <= 375, 'the sign-in form fits too')
  t.same(messages.filter(m => /Content Security Policy|pageerror/i.test(m)), [], 'no CSP violation, no page error')
})
