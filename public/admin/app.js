// The admin dashboard (GET /admin). No build step, no dependency, no inline
// script or style (the page's Content-Security-Policy allows neither).
//
// The admin token lives in `token` below, and in this tab's sessionStorage
// only if asked; it is sent in the Authorization header of the admin API and
// nowhere else: never in a URL, never logged.
'use strict'

;(function () {
  const SVG = 'http://www.w3.org/2000/svg'
  const STORAGE_KEY = 'narrative-admin-token'
  const MAX_SAMPLES = 360
  const AUDIT_PAGE = 20
  const STATUSES = ['hit', 'stale', 'durable', 'miss', 'fallback', 'error', 'refused']

  const $ = (id) => document.getElementById(id)
  const params = new URLSearchParams(window.location.search)
  const refreshSeconds = clamp(Number(params.get('refresh')) || 5, 1, 60)

  let token = null
  let timer = null
  let generation = 0
  let samples = []
  let previous = null
  // The audit page shown: null is the newest (refreshed with the rest); else the `before` cursor of an older one.
  let auditBefore = null
  let auditNext = null
  let acting = false

  // ---- token ------------------------------------------------------------

  function setToken (value, remember) {
    token = value
    try {
      if (remember) window.sessionStorage.setItem(STORAGE_KEY, value)
      else window.sessionStorage.removeItem(STORAGE_KEY)
    } catch { /* storage refused: memory only */ }
  }

  function forgetToken () {
    token = null
    try { window.sessionStorage.removeItem(STORAGE_KEY) } catch { /* nothing stored */ }
  }

  // ---- API ----------------------------------------------------------------

  class ApiError extends Error {
    constructor (status, message) {
      super(message)
      this.status = status
    }
  }

  const REASONS = {
    401: '401 Unauthorized: the token was refused (malformed, expired, or not signed with this server\'s JWT_SECRET).',
    403: '403 Forbidden: the token has no admin role, or this address is not in ADMIN_IP_ALLOWLIST.',
    429: '429 Too Many Requests: the admin rate limit was reached.',
    503: '503 Service Unavailable: the admin routes are closed while Redis cannot count requests.'
  }

  async function api (path, options) {
    const method = (options && options.method) || 'GET'
    const headers = { authorization: 'Bearer ' + token, accept: 'application/json' }
    let body
    if (options && options.body !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.body)
    }
    const res = await fetch(path, {
      method,
      headers,
      body,
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer'
    })
    if (!res.ok) {
      let detail = ''
      try { detail = (await res.json()).message || '' } catch { /* not JSON */ }
      const reason = REASONS[res.status] || (res.status + ' ' + res.statusText)
      throw new ApiError(res.status, detail !== '' ? reason + ' (' + detail + ')' : reason)
    }
    return await res.json()
  }

  async function readyState () {
    try {
      const res = await fetch('/ready', { cache: 'no-store', credentials: 'omit' })
      return await res.json()
    } catch {
      return null
    }
  }

  // ---- polling ------------------------------------------------------------

  async function signIn (value, remember) {
    setToken(value, remember)
    const mine = ++generation
    try {
      const first = await fetchAll()
      if (mine !== generation) return
      showDashboard()
      render(first)
      schedule(mine)
    } catch (err) {
      if (mine !== generation) return
      failSignIn(err)
    }
  }

  function signOut (message) {
    generation++
    clearTimeout(timer)
    if ($('confirm').open) $('confirm').close('cancel')
    forgetToken()
    resetData()
    $('dashboard').hidden = true
    $('sign-out').hidden = true
    $('login').hidden = false
    const error = $('login-error')
    error.hidden = message === undefined
    error.textContent = message || ''
    $('token').value = ''
    $('token').focus()
  }

  function failSignIn (err) {
    const status = err instanceof ApiError ? err.status : 0
    const message = err instanceof ApiError ? err.message : 'The server did not answer: ' + String(err && err.message)
    if (status === 401 || status === 403) signOut(message)
    else {
      forgetToken()
      $('login-error').hidden = false
      $('login-error').textContent = message + ' Try again in a moment.'
    }
  }

  function schedule (mine) {
    clearTimeout(timer)
    timer = setTimeout(() => { tick(mine) }, refreshSeconds * 1000)
  }

  async function tick (mine) {
    if (mine !== generation || token === null) return
    try {
      const data = await fetchAll()
      if (mine !== generation) return
      render(data)
    } catch (err) {
      if (mine !== generation) return
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        signOut(err.message)
        return
      }
      $('poll-error').hidden = false
      $('poll-error').textContent = (err instanceof ApiError ? err.message : 'The server did not answer.') + ' Retrying every ' + refreshSeconds + ' s.'
    }
    schedule(mine)
  }

  // Stats are required; analytics (PostgreSQL) may fail alone: the live figures still update.
  async function fetchAll () {
    const period = $('period').value
    const minutes = $('history-minutes').value
    const [stats, analytics, ready, history, audit, rollout] = await Promise.allSettled([
      api('/api/narrative/stats'),
      api('/api/narrative/analytics?period=' + encodeURIComponent(period)),
      readyState(),
      api('/api/narrative/history?minutes=' + encodeURIComponent(minutes)),
      auditBefore === null ? api('/api/narrative/audit?limit=' + AUDIT_PAGE) : Promise.resolve(null),
      api('/api/narrative/rollout')
    ])
    if (stats.status === 'rejected') throw stats.reason
    for (const r of [analytics, history, audit, rollout]) {
      if (r.status === 'rejected' && r.reason instanceof ApiError && (r.reason.status === 401 || r.reason.status === 403)) throw r.reason
    }
    const failed = [[analytics, 'Analytics'], [history, 'History'], [audit, 'Audit log'], [rollout, 'Rollout']]
      .filter(([r]) => r.status === 'rejected')
      .map(([r, what]) => what + ' unavailable: ' + (r.reason instanceof ApiError ? r.reason.message : 'no answer'))
    return {
      stats: stats.value,
      analytics: analytics.status === 'fulfilled' ? analytics.value : null,
      history: history.status === 'fulfilled' ? history.value : null,
      audit: audit.status === 'fulfilled' ? audit.value : null,
      rollout: rollout.status === 'fulfilled' ? rollout.value : null,
      analyticsError: failed.length > 0 ? failed.join(' ') : null,
      ready: ready.status === 'fulfilled' ? ready.value : null,
      at: Date.now()
    }
  }

  // ---- rendering ----------------------------------------------------------

  function showDashboard () {
    $('login').hidden = true
    $('login-error').hidden = true
    $('dashboard').hidden = false
    $('sign-out').hidden = false
    $('token').value = ''
  }

  function resetData () {
    samples = []
    previous = null
    auditBefore = null
    auditNext = null
    $('poll-error').hidden = true
    $('act-result').hidden = true
    $('act-error').hidden = true
    $('audit-error').hidden = true
    clear($('audit-rows'))
    $('history-note').textContent = ''
    for (const id of ['history-chart', 'latency-chart']) {
      const svg = $(id)
      svg.dataset.buckets = '0'
      svg.dataset.points = '0'
      svg.dataset.total = ''
    }
    for (const el of document.querySelectorAll('#dashboard [id]')) {
      if (el.tagName === 'svg') {
        clear(el)
        el.dataset.samples = '0'
        el.dataset.bars = '0'
        continue
      }
      if (el.tagName === 'TD' || el.tagName === 'SPAN' || el.tagName === 'B' || el.classList.contains('big')) {
        if (el.id === 'refresh-seconds' || el.id === 'audit-page') continue
        el.textContent = '–'
        if ('value' in el.dataset) el.dataset.value = ''
      }
    }
  }

  function renderFleet (fleet) {
    const body = $('fleet-rows')
    clear(body)
    if (!fleet) return
    const row = (cells, cls) => {
      const tr = document.createElement('tr')
      if (cls) tr.className = cls
      for (const c of cells) {
        const td = document.createElement('td')
        td.textContent = c
        tr.appendChild(td)
      }
      body.appendChild(tr)
      return tr
    }
    const now = Date.now()
    for (const i of fleet.instances) {
      const tr = row([i.id + (i.self ? ' (this one)' : ''), integer(i.hits), integer(i.staleHits), integer(i.durableHits), integer(i.misses), integer(i.fallbacks), integer(i.generations), i.breaker, duration(now - i.startedAt)], i.self ? 'self' : '')
      tr.dataset.instance = i.id
    }
    const t = fleet.total
    row(['Sum of ' + t.instances, integer(t.hits), integer(t.staleHits), integer(t.durableHits), integer(t.misses), integer(t.fallbacks), integer(t.generations), '', ''], 'total')
    $('fleet-summary').textContent = t.instances + (t.instances === 1 ? ' instance' : ' instances') + ' · hit rate ' + percent(t.hitRate) + (fleet.source === 'local' ? ' · this instance only (no Redis)' : '')
    $('fleet-summary').dataset.instances = String(t.instances)
  }

  let rolloutPaused = null

  function renderRollout (r) {
    const hot = Object.entries(r.hotKeys.onVersion).map(([v, n]) => v + ' ' + integer(n)).join(' · ')
    $('ro-versions').textContent = r.active + ' · ' + (r.canary ? r.canary.version + ' on ' + r.canary.percent + '% of keys' : 'no canary') + ' · ' + (r.previous.length > 0 ? r.previous.join(', ') : 'none')
    $('ro-hot').textContent = (hot === '' ? 'none yet' : hot) + (r.hotKeys.none > 0 ? ' · ' + integer(r.hotKeys.none) + ' on none' : '') + ' (of ' + integer(r.hotKeys.sampled) + ')'
    $('ro-models').textContent = r.model + ' · ' + (r.previousModels.length > 0 ? r.previousModels.join(', ') : 'none')
    $('ro-hot-models').textContent = Object.entries(r.hotKeys.onModel).map(([m, n]) => m + ' ' + integer(n)).join(' · ') || 'none yet'
    $('ro-remaining').textContent = integer(r.remaining) + ' · ' + (r.done ? 'done' : duration(r.expectedSecondsToFinish * 1000))
    $('ro-state').textContent = integer(r.ratePerMinute) + '/min · ' + r.mode + (r.paused ? ' · paused' : '')
    $('ro-state').dataset.paused = String(r.paused)
    $('ro-counters').textContent = [r.counters.earlierAnswers, r.counters.written, r.counters.throttled].map(integer).join(' · ')
    const p = r.prewarm
    $('ro-prewarm').textContent = p === null
      ? 'off (PREWARM_SCHEDULE unset)'
      : p.schedule + ' · at most ' + integer(p.maxCalls) + ' calls · ' + (p.running ? 'running now' : 'next ' + (p.nextRunAt === null ? '–' : new Date(p.nextRunAt).toLocaleString()))
    $('rollout-summary').textContent = r.done ? r.active + ' on ' + r.model + ' everywhere' : integer(r.remaining) + ' keys to go'
    rolloutPaused = r.paused
    const toggle = $('ro-toggle')
    toggle.textContent = r.paused ? 'Resume the rollout' : 'Pause the rollout'
    if (!acting) toggle.disabled = false
  }

  function duration (ms) {
    const s = Math.max(0, Math.round(ms / 1000))
    if (s < 120) return s + ' s'
    if (s < 7200) return Math.round(s / 60) + ' min'
    return Math.round(s / 3600) + ' h'
  }

  function render ({ stats, analytics, history, audit, rollout, analyticsError, ready, at }) {
    renderReady(ready)
    if (rollout !== null) renderRollout(rollout)
    if (history !== null) renderHistory(history)
    if (audit !== null && auditBefore === null) renderAudit(audit)
    renderFleet(stats.fleet)
    $('poll-error').hidden = analyticsError === null
    $('poll-error').textContent = analyticsError || ''
    const answered = stats.hits + stats.staleHits + stats.durableHits + stats.misses + stats.fallbacks
    const cached = stats.hits + stats.staleHits + stats.durableHits
    setFigure('stat-hit-rate', stats.hitRate, percent(stats.hitRate))
    setFigure('stat-answered', answered, integer(answered))
    $('stat-hits').textContent = integer(stats.hits)
    $('stat-stale').textContent = integer(stats.staleHits)
    $('stat-durable').textContent = integer(stats.durableHits)
    $('stat-misses').textContent = integer(stats.misses)
    $('stat-fallbacks').textContent = integer(stats.fallbacks)
    setFigure('stat-keys', stats.keys, integer(stats.keys))
    $('stat-memory').textContent = stats.memoryUsed
    $('stat-store').textContent = stats.store
    $('stat-breaker').textContent = stats.breaker
    $('eng-version').textContent = stats.engineVersion
    // The version that writes (and its hash, part of its keys), and the canary's share when one is on.
    $('eng-prompt').textContent = stats.promptVersion + ' (' + stats.promptHash + ')' + ' · ' + (stats.canary ? stats.canary.version + ' on ' + stats.canary.percent + '% of keys' : 'no canary')
    $('eng-model').textContent = stats.model
    $('eng-days').textContent = stats.staleDays + ' d / ' + stats.ttlDays + ' d'
    $('eng-refresh').textContent = [stats.refresh.started, stats.refresh.succeeded, stats.refresh.failed, stats.refresh.skippedLocked].map(integer).join(' / ')
    $('eng-analytics').textContent = [stats.analytics.recorded, stats.analytics.written, stats.analytics.dropped].map(integer).join(' / ')

    if (analytics !== null) renderAnalytics(analytics)

    // Hit rate between this sample and the previous one, when anything was answered meanwhile.
    let interval = null
    if (previous !== null && answered > previous.answered) {
      interval = (cached - previous.cached) / (answered - previous.answered)
    }
    previous = { answered, cached }
    samples.push({ at, total: stats.hitRate, interval })
    if (samples.length > MAX_SAMPLES) samples.shift()
    drawHitRate($('hit-rate-chart'), samples)
    $('updated').textContent = new Date(at).toLocaleTimeString()
  }

  // ---- history (from the analytics tables: the same after a reload) ----------

  function renderHistory (history) {
    const totals = { generations: 0 }
    for (const k of STATUSES) totals[k] = 0
    for (const b of history.buckets) {
      for (const k of STATUSES) totals[k] += b[k]
      totals.generations += b.generations
    }
    for (const k of [...STATUSES, 'generations']) setFigure('hist-' + k, totals[k], integer(totals[k]))
    $('history-note').textContent = history.note
    drawHistory($('history-chart'), history.buckets)
    drawLatency($('latency-chart'), history.buckets)
  }

  function drawHistory (svg, buckets) {
    clear(svg)
    const W = 600
    const H = 220
    const x0 = 44
    const x1 = W - 12
    const top = 12
    const bottom = 28
    const totalOf = (b) => STATUSES.reduce((n, k) => n + b[k], 0)
    const max = Math.max(1, ...buckets.map(totalOf))
    const y = (v) => top + (1 - v / max) * (H - top - bottom)
    for (const level of [0, 0.5, 1]) {
      const v = Math.round(max * level)
      svg.appendChild(svgEl('line', { x1: x0, x2: x1, y1: y(v), y2: y(v), class: 'gridline' }))
      svg.appendChild(svgEl('text', { x: x0 - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, integer(v)))
    }
    svg.dataset.buckets = String(buckets.length)
    svg.dataset.total = String(buckets.reduce((n, b) => n + totalOf(b), 0))
    if (buckets.length === 0) return
    const step = (x1 - x0) / buckets.length
    const width = Math.max(step - (step > 4 ? 1 : 0), 0.5)
    buckets.forEach((b, i) => {
      const total = totalOf(b)
      if (total === 0) return
      const g = svgEl('g', { class: 'minute', 'data-at': b.at, 'data-total': total })
      g.appendChild(svgEl('title', {}, new Date(b.at).toLocaleTimeString() + ': ' + STATUSES.filter(k => b[k] > 0).map(k => b[k] + ' ' + k).join(', ')))
      let base = 0
      for (const k of STATUSES) {
        if (b[k] === 0) continue
        const yTop = y(base + b[k])
        g.appendChild(svgEl('rect', { x: (x0 + i * step).toFixed(2), y: yTop.toFixed(2), width: width.toFixed(2), height: (y(base) - yTop).toFixed(2), class: 's-' + k, 'data-status': k, 'data-count': b[k] }))
        base += b[k]
      }
      svg.appendChild(g)
    })
    svg.appendChild(svgEl('text', { x: x0, y: H - 8, class: 'axis' }, new Date(buckets[0].at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })))
    svg.appendChild(svgEl('text', { x: x1, y: H - 8, class: 'axis', 'text-anchor': 'end' }, new Date(buckets[buckets.length - 1].at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })))
  }

  function drawLatency (svg, buckets) {
    clear(svg)
    const W = 600
    const H = 220
    const x0 = 56
    const x1 = W - 12
    const top = 12
    const bottom = 28
    const timed = buckets.map((b, i) => ({ i, p50: b.generationP50Ms, p95: b.generationP95Ms })).filter(p => p.p50 !== null)
    svg.dataset.points = String(timed.length)
    const max = Math.max(1, ...timed.map(p => p.p95))
    const y = (v) => top + (1 - v / max) * (H - top - bottom)
    const x = (i) => buckets.length <= 1 ? x1 : x0 + i / (buckets.length - 1) * (x1 - x0)
    for (const level of [0, 0.5, 1]) {
      const v = Math.round(max * level)
      svg.appendChild(svgEl('line', { x1: x0, x2: x1, y1: y(v), y2: y(v), class: 'gridline' }))
      svg.appendChild(svgEl('text', { x: x0 - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, integer(v) + ' ms'))
    }
    if (timed.length === 0) {
      svg.appendChild(svgEl('text', { x: (x0 + x1) / 2, y: H / 2, class: 'axis', 'text-anchor': 'middle' }, 'No model calls in this window.'))
      return
    }
    for (const k of ['p95', 'p50']) {
      if (timed.length > 1) svg.appendChild(svgEl('polyline', { points: timed.map(p => x(p.i).toFixed(1) + ',' + y(p[k]).toFixed(1)).join(' '), class: 'line ' + k }))
      for (const p of timed) svg.appendChild(svgEl('circle', { cx: x(p.i).toFixed(1), cy: y(p[k]).toFixed(1), r: 2.5, class: 'dot ' + k, 'data-ms': p[k] }))
    }
  }

  // ---- audit log ------------------------------------------------------------

  function renderAudit (page) {
    const body = $('audit-rows')
    clear(body)
    for (const e of page.entries) {
      const tr = document.createElement('tr')
      tr.dataset.id = String(e.id)
      tr.dataset.outcome = e.outcome
      tr.className = e.outcome
      const cells = [new Date(e.at).toLocaleString(), e.actor === null ? '–' : e.actor, e.action, e.status + ' ' + e.outcome, e.ip]
      for (const c of cells) {
        const td = document.createElement('td')
        td.textContent = c
        tr.appendChild(td)
      }
      body.appendChild(tr)
    }
    if (page.entries.length === 0) {
      const tr = document.createElement('tr')
      const td = document.createElement('td')
      td.colSpan = 5
      td.textContent = 'Nothing here.'
      tr.appendChild(td)
      body.appendChild(tr)
    }
    auditNext = page.next
    $('audit-older').disabled = page.next === null
    $('audit-newest').disabled = auditBefore === null
    $('audit-page').textContent = auditBefore === null ? 'newest' : 'older than #' + auditBefore
    $('audit-error').hidden = true
  }

  async function loadAudit (before) {
    try {
      const page = await api('/api/narrative/audit?limit=' + AUDIT_PAGE + (before === null ? '' : '&before=' + before))
      auditBefore = before
      renderAudit(page)
    } catch (err) {
      $('audit-error').hidden = false
      $('audit-error').textContent = 'Audit log unavailable: ' + (err instanceof ApiError ? err.message : 'no answer')
    }
  }

  // ---- actions, each confirmed first --------------------------------------

  function confirmAction (title, text, request) {
    const dialog = $('confirm')
    $('confirm-title').textContent = title
    $('confirm-text').textContent = text
    $('confirm-request').textContent = request
    dialog.returnValue = ''
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true })
      dialog.showModal()
      $('confirm-cancel').focus()
    })
  }

  async function act (name, title, text, path, options, describe) {
    if (acting || token === null) return
    const result = $('act-result')
    const error = $('act-error')
    const method = (options && options.method) || 'GET'
    const confirmed = await confirmAction(title, text, method + ' ' + path + (options && options.body ? ' ' + JSON.stringify(options.body) : ''))
    if (!confirmed) {
      result.hidden = false
      error.hidden = true
      result.dataset.action = name
      result.dataset.outcome = 'cancelled'
      result.textContent = title + ': cancelled, nothing was done.'
      return
    }
    acting = true
    for (const b of document.querySelectorAll('.action button')) b.disabled = true
    result.hidden = false
    result.dataset.action = name
    result.dataset.outcome = 'running'
    result.textContent = title + ': working…'
    error.hidden = true
    try {
      const answer = await api(path, options)
      result.dataset.outcome = 'done'
      result.textContent = describe(answer)
    } catch (err) {
      result.hidden = true
      error.hidden = false
      error.dataset.action = name
      error.textContent = title + ' failed: ' + (err instanceof ApiError ? err.message : 'the server did not answer.')
      if (err instanceof ApiError && err.status === 401) { signOut(err.message); return }
    } finally {
      acting = false
      for (const b of document.querySelectorAll('.action button')) b.disabled = false
    }
    if (auditBefore === null) loadAudit(null)
  }

  function wireActions () {
    $('form-invalidate').addEventListener('submit', (event) => {
      event.preventDefault()
      const pattern = $('act-pattern').value.trim()
      act('invalidate', 'Invalidate cached narratives',
        'Every cached narrative whose key matches "' + pattern + '" inside this server\'s namespace (a pattern without the namespace is taken under it) will be deleted from Redis, from PostgreSQL (the durable tier) and from every instance\'s memory. ' +
        'The next request for each will call the model again (a paid call). This cannot be undone.',
        '/api/narrative/cache?pattern=' + encodeURIComponent(pattern), { method: 'DELETE' },
        (r) => 'Invalidated ' + integer(r.deleted) + ' cached ' + (r.deleted === 1 ? 'entry' : 'entries') + ' and ' + integer(r.deletedDurable) + ' durable ' + (r.deletedDurable === 1 ? 'row' : 'rows') + ' matching ' + r.match + '.')
    })
    $('form-prewarm').addEventListener('submit', (event) => {
      event.preventDefault()
      const top = Number($('act-top').value)
      const period = $('act-period').value
      act('prewarm', 'Pre-warm', 'The ' + integer(top) + ' most requested profiles of the ' + periodName(period) + ' before now that are missing or stale will be generated now, 4 at a time: up to ' + integer(top) + ' model calls, each a paid call. Fresh ones are skipped. This may take a while.',
        '/api/narrative/prewarm', { method: 'POST', body: { top, period } },
        (r) => 'Pre-warm: ' + integer(r.warmed) + ' generated, ' + integer(r.skipped) + ' already fresh, ' + integer(r.failed) + ' failed, ' + integer(r.refused) + ' refused by today\'s rules.')
    })
    $('form-forget').addEventListener('submit', (event) => {
      event.preventDefault()
      const user = $('act-user').value.trim()
      act('forget', 'Forget a user', 'Every analytics row of user "' + user + '" (those still buffered in memory too) and their index of requested keys will be deleted from PostgreSQL. ' +
        'Cached narratives are shared by every user with the same profile and hold no user id: they stay. This cannot be undone.',
      '/api/narrative/user/' + encodeURIComponent(user), { method: 'DELETE' },
      (r) => 'Forgot "' + user + '": ' + integer(r.deleted_analytics_rows) + ' analytics ' + (r.deleted_analytics_rows === 1 ? 'row' : 'rows') + ' and ' + integer(r.deleted_index_entries) + ' index ' + (r.deleted_index_entries === 1 ? 'entry' : 'entries') + ' deleted. ' + r.rationale)
    })
    $('ro-toggle').addEventListener('click', () => {
      if (rolloutPaused === null) return
      const resume = rolloutPaused
      act(resume ? 'rollout-resume' : 'rollout-pause', resume ? 'Resume the rollout' : 'Pause the rollout',
        resume
          ? 'Background writes of the active prompt version start again on every instance, at most ROLLOUT_RATE model calls a minute (paid calls). Requests are answered as before.'
          : 'Background writes of the active prompt version stop on every instance: no more model calls for the rollout until it is resumed. Keys stay answered by the earlier version meanwhile.',
        '/api/narrative/rollout/' + (resume ? 'resume' : 'pause'), { method: 'POST' },
        (r) => 'The rollout is ' + (r.paused ? 'paused' : 'running') + ' on every instance.')
        .then(() => { if (token !== null) tick(generation) })
    })
    $('confirm-cancel').addEventListener('click', () => $('confirm').close('cancel'))
    $('audit-older').addEventListener('click', () => { if (auditNext !== null) loadAudit(auditNext) })
    $('audit-newest').addEventListener('click', () => loadAudit(null))
    $('history-minutes').addEventListener('change', () => {
      if (token === null) return
      tick(generation)
    })
  }

  function renderAnalytics (analytics) {
    const cost = analytics.estimatedCost
    for (const el of document.querySelectorAll('.period-label')) el.textContent = periodName(analytics.period)
    setFigure('cost-saved', cost.saved, usd(cost.saved))
    setFigure('cost-without', cost.withoutCache, usd(cost.withoutCache))
    setFigure('cost-openai', cost.openai, usd(cost.openai))
    setFigure('cost-redis', cost.redis, usd(cost.redis))
    setFigure('cost-total', cost.total, usd(cost.total))
    setFigure('cost-without-row', cost.withoutCache, usd(cost.withoutCache))
    setFigure('cost-saved-row', cost.saved, usd(cost.saved))
    // The model paid twice for one narrative: how many times, and what it cost (issue 17).
    setFigure('cost-repaid', cost.repaid, integer(analytics.repaidGenerations) + ' (' + usd(cost.repaid) + ')')
    $('cost-repaid').dataset.count = String(analytics.repaidGenerations)
    $('an-total').textContent = integer(analytics.totalRequests)
    setFigure('an-hit-rate', analytics.hitRate, percent(analytics.hitRate))
    $('an-generations').textContent = integer(analytics.generations)
    $('an-gen-time').textContent = integer(analytics.avgGenerationTime) + ' ms'
    $('an-tokens').textContent = integer(analytics.tokens.prompt) + ' / ' + integer(analytics.tokens.completion)
    drawTopSystems($('top-systems-chart'), analytics.topSystems)
  }

  function renderReady (ready) {
    if (ready === null) {
      pill('ready-status', 'server unreachable', 'bad')
      return
    }
    pill('ready-status', 'server ' + ready.status, ready.status === 'ready' ? 'ok' : 'bad')
    pill('ready-redis', 'redis ' + ready.redis, ready.redis === 'up' || ready.redis === 'embedded' ? 'ok' : 'bad')
    pill('ready-breaker', 'breaker ' + ready.breaker, ready.breaker === 'closed' ? 'ok' : ready.breaker === 'open' ? 'bad' : 'warn')
    pill('ready-database', 'database ' + ready.database, ready.database === 'up' || ready.database === 'embedded' ? 'ok' : 'bad')
    pill('ready-narrator', 'narrator ' + ready.narrator, 'info')
  }

  function pill (id, text, state) {
    const el = $(id)
    el.textContent = text
    el.dataset.state = state
  }

  function setFigure (id, value, text) {
    const el = $(id)
    el.textContent = text
    el.dataset.value = String(value)
    el.classList.toggle('negative', value < 0)
  }

  // ---- charts (SVG built with DOM calls: nothing inline, nothing parsed) ----

  function svgEl (name, attrs, text) {
    const el = document.createElementNS(SVG, name)
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v))
    if (text !== undefined) el.textContent = text
    return el
  }

  function clear (el) {
    while (el.firstChild) el.removeChild(el.firstChild)
  }

  function drawHitRate (svg, points) {
    clear(svg)
    const W = 600
    const H = 220
    const left = 44
    const right = 72
    const top = 12
    const bottom = 28
    const x0 = left
    const x1 = W - right
    const y = (v) => top + (1 - v) * (H - top - bottom)
    for (const level of [0, 0.5, 0.9, 1]) {
      svg.appendChild(svgEl('line', { x1: x0, x2: x1, y1: y(level), y2: y(level), class: level === 0.9 ? 'gridline target' : 'gridline' }))
      svg.appendChild(svgEl('text', { x: x0 - 6, y: y(level) + 4, class: 'axis', 'text-anchor': 'end' }, Math.round(level * 100) + '%'))
    }
    svg.dataset.samples = String(points.length)
    if (points.length === 0) return
    const first = points[0].at
    const last = points[points.length - 1].at
    const span = Math.max(last - first, 1)
    const x = (at) => points.length === 1 ? x1 : x0 + (at - first) / span * (x1 - x0)
    svg.appendChild(svgEl('text', { x: x0, y: H - 8, class: 'axis' }, new Date(first).toLocaleTimeString()))
    svg.appendChild(svgEl('text', { x: x1, y: H - 8, class: 'axis', 'text-anchor': 'end' }, new Date(last).toLocaleTimeString()))

    // Between samples: separate segments, broken where nothing was answered.
    let segment = []
    const flush = () => {
      if (segment.length > 1) svg.appendChild(svgEl('polyline', { points: segment.join(' '), class: 'line interval' }))
      else if (segment.length === 1) {
        const [cx, cy] = segment[0].split(',')
        svg.appendChild(svgEl('circle', { cx, cy, r: 2.5, class: 'dot interval' }))
      }
      segment = []
    }
    for (const p of points) {
      if (p.interval === null) flush()
      else segment.push(x(p.at).toFixed(1) + ',' + y(p.interval).toFixed(1))
    }
    flush()

    const total = points.map(p => x(p.at).toFixed(1) + ',' + y(p.total).toFixed(1))
    if (total.length > 1) svg.appendChild(svgEl('polyline', { points: total.join(' '), class: 'line total' }))
    const end = points[points.length - 1]
    svg.appendChild(svgEl('circle', { cx: x(end.at).toFixed(1), cy: y(end.total).toFixed(1), r: 3.5, class: 'dot total' }))
    const label = svgEl('text', { x: x1 + 8, y: y(end.total) + 4, class: 'value', id: 'hit-rate-last' }, percent(end.total))
    svg.appendChild(label)
    svg.dataset.last = String(end.total)
  }

  function drawTopSystems (svg, systems) {
    clear(svg)
    svg.dataset.bars = String(systems.length)
    const W = 600
    const labelWidth = 150
    const countWidth = 60
    const rowHeight = 21
    const height = Math.max(systems.length * rowHeight + 8, 60)
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + height)
    if (systems.length === 0) {
      svg.appendChild(svgEl('text', { x: W / 2, y: 34, class: 'axis', 'text-anchor': 'middle' }, 'No requests in this period yet.'))
      return
    }
    const max = Math.max(...systems.map(s => s.count), 1)
    const barMax = W - labelWidth - countWidth - 12
    systems.forEach((s, i) => {
      const g = svgEl('g', { class: 'bar', 'data-system': s.system, 'data-count': s.count, transform: 'translate(0,' + (i * rowHeight + 4) + ')' })
      g.appendChild(svgEl('title', {}, s.system + ': ' + s.count + ' requests'))
      g.appendChild(svgEl('text', { x: labelWidth - 8, y: 14, class: 'label', 'text-anchor': 'end' }, s.system))
      g.appendChild(svgEl('rect', { x: labelWidth, y: 2, height: rowHeight - 6, width: Math.max(2, s.count / max * barMax).toFixed(1), rx: 3 }))
      g.appendChild(svgEl('text', { x: labelWidth + Math.max(2, s.count / max * barMax) + 6, y: 14, class: 'count' }, integer(s.count)))
      svg.appendChild(g)
    })
  }

  // ---- formatting -----------------------------------------------------------

  function clamp (v, lo, hi) { return Math.min(hi, Math.max(lo, v)) }
  function percent (v) { return (v * 100).toFixed(1) + '%' }
  function integer (v) { return Math.round(v).toLocaleString('en-US') }
  function usd (v) {
    const digits = Math.abs(v) >= 1 || v === 0 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6
    return (v < 0 ? '-$' : '$') + Math.abs(v).toFixed(digits)
  }
  function periodName (p) { return { '1d': '1 day', '7d': '7 days', '30d': '30 days' }[p] || p }

  // ---- wiring -----------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('refresh-seconds').textContent = String(refreshSeconds)
    $('login-form').addEventListener('submit', (event) => {
      event.preventDefault()
      const value = $('token').value.trim()
      if (value === '') return
      $('login-error').hidden = true
      signIn(value, $('remember').checked)
    })
    $('sign-out').addEventListener('click', () => signOut())
    wireActions()
    $('period').addEventListener('change', () => {
      if (token === null) return
      tick(generation)
    })
    readyState().then(renderReady)
    let stored = null
    try { stored = window.sessionStorage.getItem(STORAGE_KEY) } catch { /* no storage */ }
    if (stored !== null && stored !== '') {
      $('remember').checked = true
      signIn(stored, true)
    } else {
      $('token').focus()
    }
  })
})()
