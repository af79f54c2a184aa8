// A real headless Chromium (the Debian package) driven by playwright-core, for
// the browser tests. Launched with a fresh profile directory and without any of
// Chromium's background network traffic: this machine may have no network, and
// a Chromium that tries to reach Google's services hangs on connections.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page, type Request } from 'playwright-core'
import { track } from './reaper.ts'
import type { Teardownable } from './env.ts'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

/** Where screenshots go (git-ignored). */
export const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url)

export interface BrowserSession {
  context: BrowserContext
  page: Page
  /** Every request the page made, in order. */
  requests: Request[]
  /** Console messages and page errors, for diagnostics and CSP checks. */
  console: string[]
  /** Writes a PNG of the page to test-artifacts/<name>.png; returns its path. */
  screenshot (name: string): Promise<string>
}

/** A fresh Chromium with one page, closed (and its profile removed) on teardown. */
export async function openBrowser (t: Teardownable, options: { viewport?: { width: number, height: number } } = {}): Promise<BrowserSession> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'nc-chromium-'))
  const untrackDir = track('dir', userDataDir)
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: options.viewport ?? { width: 1280, height: 900 },
    timeout: 30_000
  })
  t.teardown(async () => {
    await context.close().catch(() => {})
    await rm(userDataDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {})
    untrackDir()
  })
  const page = context.pages()[0] ?? await context.newPage()
  page.setDefaultTimeout(15_000)
  const requests: Request[] = []
  const console: string[] = []
  context.on('request', r => { requests.push(r) })
  page.on('console', m => { console.push(`${m.type()}: ${m.text()}`) })
  page.on('pageerror', e => { console.push(`pageerror: ${e.message}`) })
  return {
    context,
    page,
    requests,
    console,
    async screenshot (name) {
      await mkdir(ARTIFACTS, { recursive: true })
      const path = new URL(`${name}.png`, ARTIFACTS).pathname
      await page.screenshot({ path, fullPage: true })
      return path
    }
  }
}
