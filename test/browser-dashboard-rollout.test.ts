import t from 'tap'
import type { AddressInfo } from 'node:net'
import { build, stack } from './helper.ts'
import { mintAdminToken } from '../src/admin/token.ts'
import { openBrowser } from './support/browser.ts'
import { promptVersion } from '../src/domain/prompt.ts'

const JWT_SECRET = 'browser-dashboard-rollout-secret-0123456789'

t.test('/admin: the prompt rollout panel shows the rollout as the API does, and pauses and resumes it with a confirmation', async t => {
  const s = await stack(t)
  // v1 active with v2 on a canary: the newest prompt is not the active one, which the Engine card must show.
  const app = await build(t, { env: { ...s.env, JWT_SECRET, PROMPT_VERSION: 'v1', PROMPT_CANARY: 'v2:10', OPENAI_MODEL: 'gpt-4o-mini', ROLLOUT_RATE: '30', PREWARM_SCHEDULE: '0 3 * * *', PREWARM_MAX_CALLS: '40' }, listen: true })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const token = mintAdminToken(JWT_SECRET, 'rollout-admin', 600)
  const status = async (): Promise<Record<string, any>> => await (await fetch(base + '/api/narrative/rollout', { headers: { authorization: `Bearer ${token}` } })).json() as Record<string, any>

  const { page, screenshot } = await openBrowser(t)
  await page.goto(`${base}/admin?refresh=2`)
  await page.fill('#token', token)
  await page.click('#sign-in')
  await page.locator('#ro-versions').filter({ hasText: 'v1' }).waitFor()
  const api = await status()
  t.match(api, { active: 'v1', model: 'gpt-4o-mini', canary: { version: 'v2', percent: 10 } })
  t.equal(await page.locator('#ro-versions').textContent(), 'v1 · v2 on 10% of keys · v2', 'active, canary and other versions, as the API says')
  t.equal(await page.locator('#ro-models').textContent(), 'gpt-4o-mini · none', 'the model, and no earlier one')

  // The Engine card: the active version (its hash) and the canary's share, and the model; not the newest prompt file's hash.
  await page.locator('#eng-prompt').filter({ hasText: 'v1' }).waitFor()
  t.equal(await page.locator('#eng-prompt').textContent(), `v1 (${promptVersion('v1')?.hash ?? '?'}) · v2 on 10% of keys`)
  t.equal(await page.locator('#eng-model').textContent(), 'gpt-4o-mini')
  t.match(await page.locator('#ro-state').textContent(), /^30\/min · gradual$/, 'the rate and the mode')
  t.match(await page.locator('#ro-prewarm').textContent(), /^0 3 \* \* \* · at most 40 calls · next /, 'the scheduled pre-warm')

  // Pause: the dialog says what will happen; cancel changes nothing.
  await page.click('#ro-toggle')
  await page.locator('#confirm[open]').waitFor()
  t.match(await page.locator('#confirm-text').textContent(), /stop on every instance/)
  t.equal(await page.locator('#confirm-request').textContent(), 'POST /api/narrative/rollout/pause')
  await page.click('#confirm-cancel')
  t.equal((await status()).paused, false, 'cancelled: still running')

  await page.click('#ro-toggle')
  await page.locator('#confirm[open]').waitFor()
  await page.click('#confirm-ok')
  await page.locator('#act-result[data-outcome="done"]').waitFor()
  t.equal((await status()).paused, true, 'confirmed: paused, fleet-wide')
  await page.locator('#ro-state[data-paused="true"]').waitFor()
  t.equal(await page.locator('#ro-toggle').textContent(), 'Resume the rollout')
  await screenshot('dashboard-rollout')

  await page.click('#ro-toggle')
  await page.locator('#confirm[open]').waitFor()
  await page.click('#confirm-ok')
  await page.locator('#ro-state[data-paused="false"]').waitFor()
  t.equal((await status()).paused, false, 'resumed')
})
