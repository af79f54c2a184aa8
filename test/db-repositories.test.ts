import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AnalyticsEvent } from '../src/analytics/event.ts'
import type { CachedNarrative } from '../src/narrative/codec.ts'
import { AnalyticsRepository } from '../src/db/analytics-repository.ts'
import { AuditRepository } from '../src/db/audit-repository.ts'
import { openPglite, openPostgres, type Database } from '../src/db/database.ts'
import { migrate } from '../src/db/migrations.ts'
import { globToLike, NarrativesRepository } from '../src/db/narratives-repository.ts'
import { BuildClaimsRepository } from '../src/db/build-claims-repository.ts'
import { ChatEntriesRepository } from '../src/db/chat-entries-repository.ts'
import { uniqueDatabaseUrl } from './support/env.ts'
import { sleep } from './support/wait.ts'

function narrative (summary: string, engine = 'gpt-4o'): CachedNarrative {
  return {
    version: 'narrative@1.0.0',
    engine,
    prompt_hash: 'a3f2c1b9d8',
    profile: { classification: 'primary', primary: 'Arcturus', hybrid: ['Arcturus', 'Sirius'], percentages: { Arcturus: 42, Sirius: 18.5 } },
    narrative: { summary, bullets: ['one', 'two'] },
    meta: { created_at: 1_700_000_000_000, refreshed_at: 1_700_000_000_000, stale_after: 1_700_604_800_000, ttl_seconds: 2_592_000, size_bytes: 420, compression: 'none' }
  }
}

const profileA = { classification: 'primary', primary: 'Arcturus', percentages: { Arcturus: 42 } }
const profileB = { classification: 'hybrid', hybrid: ['Sirius', 'Vega'], percentages: { Sirius: 30, Vega: 30 } }

function ev (event: AnalyticsEvent['event'], at: number, extra: Partial<AnalyticsEvent> = {}): AnalyticsEvent {
  return { at, event, key: 'k', systems: ['Arcturus'], ...extra }
}

/** Every repository method, on whichever engine `db` is. */
function repositorySuite (t: Test, getDb: () => Promise<Database>): void {
  let db: Database
  t.beforeEach(async () => {
    db = await getDb()
    await db.query('TRUNCATE narratives, analytics_events, user_keys, requested_profiles, audit_log, build_claims')
  })

  t.test('database: transactions commit, roll back, and concurrent ones do not interleave', async t => {
    await db.query('CREATE TABLE IF NOT EXISTS tx_counter (id int PRIMARY KEY, n int NOT NULL); TRUNCATE tx_counter; INSERT INTO tx_counter VALUES (1, 0)')
    const bump = async (): Promise<number> => await db.transaction(async tx => {
      const [row] = await tx.query<{ n: number }>('SELECT n FROM tx_counter WHERE id = 1 FOR UPDATE')
      await tx.query('UPDATE tx_counter SET n = $1 WHERE id = 1', [row.n + 1])
      return row.n + 1
    })
    const results = await Promise.all([...Array.from({ length: 20 }, bump), db.query('SELECT 1')])
    t.same(results.slice(0, 20).sort((a, b) => (a as number) - (b as number)), Array.from({ length: 20 }, (_, i) => i + 1), 'each saw the previous one')
    const failing = db.transaction(async tx => {
      await tx.query('UPDATE tx_counter SET n = 1000 WHERE id = 1')
      throw new Error('changed my mind')
    })
    await t.rejects(failing, { message: 'changed my mind' })
    t.same(await db.query('SELECT n FROM tx_counter'), [{ n: 20 }], 'rolled back')
    await t.rejects(db.transaction(async tx => await tx.query('SELECT * FROM no_such_table')), /no_such_table/)
    t.same(await db.query('SELECT n FROM tx_counter'), [{ n: 20 }], 'usable after a failed transaction')
    t.same(await db.query<{ b: number, s: string, j: object, a: string[] }>("SELECT 9007199254740991::bigint AS b, 1.5::numeric AS s, '{\"x\":[1]}'::jsonb AS j, ARRAY['a','b'] AS a"),
      [{ b: 9007199254740991, s: '1.5', j: { x: [1] }, a: ['a', 'b'] }], 'bigint as number, numeric as string, json parsed, arrays as arrays')
    await db.query('DROP TABLE tx_counter')
  })

  t.test('narratives: insert, get, newer wins, older and equal versions never replace', async t => {
    const repo = new NarrativesRepository(db)
    t.equal(await repo.get('k1'), null, 'unknown key')
    t.equal(await repo.upsert('k1', narrative('first'), 1_000, profileA, 'en'), true, 'insert writes')
    t.same(await repo.get('k1'), { entry: narrative('first'), version: 1_000 })
    t.equal(await repo.upsert('k1', narrative('first'), 1_000, profileA, 'en'), false, 'same write again: idempotent, no write')
    t.equal(await repo.upsert('k1', narrative('equal'), 1_000, profileA, 'en'), false, 'equal version does not replace')
    t.equal(await repo.upsert('k1', narrative('older'), 999, profileA, 'en'), false, 'older version does not replace')
    t.equal((await repo.get('k1'))?.entry.narrative.summary, 'first')
    t.equal(await repo.upsert('k1', narrative('newer', 'gpt-4o-mini'), 1_700_000_000_123, profileB, 'fr'), true, 'newer replaces')
    const got = await repo.get('k1')
    t.equal(got?.version, 1_700_000_000_123, 'a 13-digit version comes back as the same number')
    t.equal(got?.entry.narrative.summary, 'newer')
    const [row] = await db.query<{ engine: string, profile: object, locale: string, created_at: number, updated_at: number }>(
      'SELECT engine, profile, locale, created_at, updated_at FROM narratives WHERE key = $1', ['k1'])
    t.equal(row.engine, 'gpt-4o-mini')
    t.same(row.profile, profileB)
    t.equal(row.locale, 'fr')
    t.ok(row.updated_at >= row.created_at)
    t.equal(await repo.count(), 1)
    await t.rejects(repo.upsert('k1', narrative('x'), Number.NaN, null, null), TypeError)
  })

  t.test('narratives: concurrent writers, the newest version is what stays; one winner among equal versions', async t => {
    const repo = new NarrativesRepository(db)
    const versions = Array.from({ length: 30 }, (_, i) => 1_700_000_000_000 + ((i * 7919) % 30))
    await Promise.all(versions.map(v => repo.upsert('race', narrative(`v${v}`), v, profileA, 'en')))
    const got = await repo.get('race')
    t.equal(got?.version, Math.max(...versions))
    t.equal(got?.entry.narrative.summary, `v${Math.max(...versions)}`)
    const same = await Promise.all(Array.from({ length: 10 }, (_, i) => repo.upsert('tie', narrative(`w${i}`), 5_000, null, null)))
    t.equal(same.filter(Boolean).length, 1, 'exactly one of ten equal-version writes wrote')
  })

  t.test('narratives: null profile/locale keep the stored ones; a row of the wrong shape reads as missing', async t => {
    const repo = new NarrativesRepository(db)
    await repo.upsert('k', narrative('a'), 1, profileA, 'en')
    await repo.upsert('k', narrative('b'), 2, null, null)
    const [row] = await db.query<{ profile: object, locale: string }>('SELECT profile, locale FROM narratives')
    t.same(row, { profile: profileA, locale: 'en' })
    await db.query(`INSERT INTO narratives (key, engine, version, entry, created_at, updated_at)
      VALUES ('broken', 'x', 1, '{"narrative": 1}', 0, 0)`)
    t.equal(await repo.get('broken'), null)
    t.equal(await repo.upsert('broken', narrative('fixed'), 2, null, null), true, 'a newer write replaces it')
    t.equal((await repo.get('broken'))?.entry.narrative.summary, 'fixed')
  })

  t.test('narratives: write() says whether a row of the same engine version was there before (a re-paid generation)', async t => {
    const repo = new NarrativesRepository(db)
    t.same(await repo.write('w', narrative('a'), 1, null, null), { written: true, existed: false }, 'first write')
    t.same(await repo.write('w', narrative('b'), 2, null, null), { written: true, existed: true }, 'a newer write over it')
    t.same(await repo.write('w', narrative('c'), 1, null, null), { written: false, existed: true }, 'an older write, refused')
    await repo.write('v', { ...narrative('old'), version: 'narrative@0.9.0' }, 1, null, null)
    t.same(await repo.write('v', narrative('new'), 2, null, null), { written: true, existed: false }, 'over an older engine version\'s row: a rebuild, not a re-payment')
  })

  t.test('build claims: one live owner at a time, released by its owner only, expired ones taken over, "built" once the row is there', async t => {
    const claims = new BuildClaimsRepository(db)
    const V = 'narrative@1.0.0'
    t.same(await claims.claim('k', 'a', 60_000, V, true), { won: true, built: false, failed: false }, 'a fresh key is claimed')
    t.same(await claims.claim('k', 'b', 60_000, V, true), { won: false, built: false, failed: false }, 'a live claim of another owner is left alone')
    await claims.release('k', 'b')
    t.same(await claims.claim('k', 'b', 60_000, V, true), { won: false, built: false, failed: false }, 'another owner cannot release it')
    await claims.release('k', 'a')
    t.same(await claims.claim('k', 'b', 1, V, true), { won: true, built: false, failed: false }, 'released: the next owner takes it')
    await sleep(20)
    t.same(await claims.claim('k', 'c', 60_000, V, true), { won: true, built: false, failed: false }, 'expired (its owner died): taken over')
    await new NarrativesRepository(db).upsert('k', narrative('x'), 1, null, null)
    t.same(await claims.claim('k', 'd', 60_000, V, true), { won: false, built: true, failed: false }, 'built: the row is there')
    t.same(await claims.claim('k2', 'd', 60_000, V, true), { won: true, built: false, failed: false }, 'another key is claimed')
    await new NarrativesRepository(db).upsert('k3', narrative('y'), 1, null, null)
    t.same(await claims.claim('k3', 'd', 60_000, V, true), { won: false, built: true, failed: false }, 'a free key whose row is there is not claimed: nothing to build, nothing to release')
    await claims.release('k2', 'd')
    t.same(await claims.claim('k', 'd', 60_000, 'narrative@2.0.0', true), { won: false, built: false, failed: false }, 'a row of another engine version is not what the caller can serve')
    t.equal(await claims.live(), 1, 'c still holds it')
    const race = await Promise.all(Array.from({ length: 10 }, (_, i) => claims.claim('race', `o${i}`, 60_000, V, true)))
    t.equal(race.filter(r => r.won).length, 1, 'ten owners at once: one wins')
  })

  t.test('build claims of chat completions: "built" once the completion is in chat_entries, not in narratives', async t => {
    const claims = new BuildClaimsRepository(db, 'chat_entries')
    t.same(await claims.claim('c', 'a', 60_000, 'chat', true), { won: true, built: false, failed: false }, 'a fresh key is claimed')
    await new NarrativesRepository(db).upsert('c', narrative('x'), 1, null, null)
    t.same(await claims.claim('c', 'b', 60_000, 'chat', true), { won: false, built: false, failed: false }, 'a narrative of the same key is not a completion')
    await claims.release('c', 'a')
    await new ChatEntriesRepository(db).write('c', { chunks: ['{}'], createdAt: 1, refreshedAt: 1, staleAfter: 2 }, 1)
    t.same(await claims.claim('c', 'b', 60_000, 'chat', true), { won: false, built: true, failed: false }, 'built: the completion is there (the waiter reads it rather than paying again); the claim is not taken')
    t.equal(await claims.live(), 0, 'no claim was taken')
  })

  t.test('build claims: a failed build leaves a marker that waiters see and a new request takes over', async t => {
    const claims = new BuildClaimsRepository(db)
    const V = 'narrative@1.0.0'
    t.same(await claims.claim('f', 'a', 60_000, V, true), { won: true, built: false, failed: false }, 'a fresh key is claimed')
    await claims.fail('f', 'b', 60_000)
    t.same(await claims.claim('f', 'w', 60_000, V, false), { won: false, built: false, failed: false }, 'only the owner marks its claim failed')
    await claims.fail('f', 'a', 60_000)
    t.same(await claims.claim('f', 'w', 60_000, V, false), { won: false, built: false, failed: true }, 'a waiter sees the failure and does not take the key')
    t.equal(await claims.live(), 0, 'a marker is not a live claim')
    t.same(await claims.claim('f', 'n', 60_000, V, true), { won: true, built: false, failed: true }, 'a new request takes it over')
    t.same(await claims.claim('f', 'w', 60_000, V, false), { won: false, built: false, failed: false }, 'and is then a live claim like any other')
    await claims.release('f', 'n')
    await claims.claim('g', 'a', 60_000, V, true)
    await claims.fail('g', 'a', 1)
    await sleep(20)
    t.same(await claims.claim('g', 'w', 60_000, V, false), { won: true, built: false, failed: false }, 'an expired marker is a free key')
  })

  t.test('narratives: deleteByKeys and deleteMatching remove exactly those keys', async t => {
    const repo = new NarrativesRepository(db)
    const keys = ['narr:v1:a:1', 'narr:v1:a:2', 'narr:v1:b:1', 'narr:v1:b_2', 'stg:v1:a:1', 'narr:v1:100%']
    for (const k of keys) await repo.upsert(k, narrative(k), 1, null, null)
    t.equal(await repo.deleteByKeys([]), 0)
    t.equal(await repo.deleteByKeys(['narr:v1:a:1', 'nope', "it's; DROP TABLE narratives"]), 1)
    t.equal(await repo.count(), 5)
    t.equal(await repo.deleteMatching('narr:v1:b?1'), 1, '? matches one character, and _ is literal')
    t.equal(await repo.deleteMatching('narr:v1:100\\%'), 1, '% is literal')
    t.equal(await repo.deleteMatching('narr:*'), 2)
    t.same((await db.query<{ key: string }>('SELECT key FROM narratives ORDER BY key')).map(r => r.key), ['stg:v1:a:1'])
    t.equal(globToLike('a*b?c%d_e\\*f'), 'a%b_c\\%d\\_e*f')
  })

  t.test('analytics: summary figures of a known sequence, exactly', async t => {
    const repo = new AnalyticsRepository(db)
    const since = 1_700_000_000_000
    const at = (n: number): number => since + n
    const events: AnalyticsEvent[] = [
      // before the window: not counted
      ...Array.from({ length: 5 }, (_, i) => ev('hit', since - 1 - i)),
      ev('generation', since - 1, { durationMs: 99_999, promptTokens: 1000, completionTokens: 1000, model: 'gpt-4o' }),
      // 6 cache hits
      ev('hit', at(1)), ev('hit', at(2)), ev('hit', at(3)), ev('stale', at(4)), ev('stale', at(5)), ev('durable', at(6)),
      // 4 misses, each with its model call
      ev('miss', at(10)), ev('generation', at(10), { durationMs: 100, promptTokens: 10, completionTokens: 20, model: 'gpt-4o' }),
      ev('miss', at(11)), ev('generation', at(11), { durationMs: 200, promptTokens: 11, completionTokens: 21, model: 'gpt-4o' }),
      ev('miss', at(12)), ev('generation', at(12), { durationMs: 300.4, promptTokens: 12, completionTokens: 22, model: 'gpt-4o' }),
      ev('miss', at(13)), ev('generation', at(13), { durationMs: 401, promptTokens: 5, completionTokens: 6, model: 'gpt-4o-mini' }),
      // that one paid for a narrative already held: a 'repaid' record beside its 'generation' (not a request)
      ev('repaid', at(13)),
      // a model call that recorded neither duration nor model (a refresh, say)
      ev('generation', at(14), {}),
      ev('fallback', at(20)), ev('fallback', at(21)), ev('error', at(22))
    ]
    // in three batches, out of order
    t.equal(await repo.insertBatch(events.slice(12)), events.length - 12)
    t.equal(await repo.insertBatch(events.slice(0, 5)), 5)
    t.equal(await repo.insertBatch(events.slice(5, 12)), 7)
    t.same(await repo.summary(since), {
      totalRequests: 13,
      cacheHits: 6,
      cacheMisses: 4,
      fallbacks: 2,
      generations: 5,
      repaidGenerations: 1,
      avgGenerationTimeMs: (100 + 200 + 300 + 401) / 4,
      promptTokens: 38,
      completionTokens: 69,
      byModel: [
        { model: 'gpt-4o', promptTokens: 33, completionTokens: 63, generations: 3 },
        { model: 'gpt-4o-mini', promptTokens: 5, completionTokens: 6, generations: 1 },
        { model: 'unknown', promptTokens: 0, completionTokens: 0, generations: 1 }
      ]
    })
    t.same(await repo.summary(at(1000)), {
      totalRequests: 0, cacheHits: 0, cacheMisses: 0, fallbacks: 0, generations: 0, repaidGenerations: 0, avgGenerationTimeMs: 0, promptTokens: 0, completionTokens: 0, byModel: []
    }, 'an empty window is all zeros')
    t.equal((await repo.summary(0)).totalRequests, 18, 'from the beginning: the older ones too')
  })

  t.test('analytics: topSystems counts each request once, for its most prominent system', async t => {
    const repo = new AnalyticsRepository(db)
    const since = 10_000
    const events: AnalyticsEvent[] = []
    const add = (n: number, systems: string[], event: AnalyticsEvent['event'] = 'hit', at = since): void => {
      for (let i = 0; i < n; i++) events.push(ev(event, at + i, { systems }))
    }
    add(5, ['Arcturus', 'Pleiades'])
    add(3, ['Vega', 'Pleiades'])
    add(3, ['Sirius', 'Pleiades', 'Arcturus'], 'miss')
    add(4, ['Zeta'], 'generation') // not a request
    add(9, ['Orion'], 'hit', since - 100) // before the window
    add(2, []) // no system
    await repo.insertBatch(events)
    t.same(await repo.topSystems(since, 10), [
      { system: 'Arcturus', count: 5 },
      { system: 'Sirius', count: 3 },
      { system: 'Vega', count: 3 }
    ], 'Pleiades is never first; ties by name')
    t.same(await repo.topSystems(since, 2), [{ system: 'Arcturus', count: 5 }, { system: 'Sirius', count: 3 }])
    t.same((await repo.topSystems(0, 1))[0], { system: 'Orion', count: 9 })
  })

  t.test('analytics: topKeys counts requests per key, with the latest profile to rebuild it', async t => {
    const repo = new AnalyticsRepository(db)
    const since = 50_000
    const events: AnalyticsEvent[] = []
    for (let i = 0; i < 4; i++) events.push(ev('hit', since + i, { key: 'kA', profile: profileA, locale: 'en' }))
    for (let i = 0; i < 6; i++) events.push(ev('miss', since + i, { key: 'kB', profile: i === 5 ? profileB : profileA, locale: i === 5 ? 'de' : 'en' }))
    for (let i = 0; i < 4; i++) events.push(ev('stale', since + i, { key: 'kC', profile: profileA, locale: 'en' }))
    for (let i = 0; i < 9; i++) events.push(ev('hit', since + i, { key: 'kNoProfile' })) // cannot be rebuilt
    for (let i = 0; i < 9; i++) events.push(ev('generation', since + i, { key: 'kD', profile: profileA, locale: 'en' })) // not requests
    events.push(ev('hit', since + 1, { key: 'kE', profile: profileA })) // profile without locale: not kept
    await repo.insertBatch(events)
    // a late batch with an older event must not replace kB's latest profile
    await repo.insertBatch([ev('hit', since - 10, { key: 'kB', profile: profileA, locale: 'en' })])
    t.same(await repo.topKeys(since, 10), [
      { key: 'kB', count: 6, profile: profileB, locale: 'de' },
      { key: 'kA', count: 4, profile: profileA, locale: 'en' },
      { key: 'kC', count: 4, profile: profileA, locale: 'en' }
    ])
    t.same((await repo.topKeys(since, 1)).map(k => k.key), ['kB'])
    t.same((await repo.topKeys(0, 1))[0].count, 7, 'the older event counts in a wider window')
    const [rp] = await db.query<{ n: number }>("SELECT count(*) AS n FROM requested_profiles WHERE key IN ('kNoProfile', 'kE')")
    t.equal(rp.n, 0)
  })

  t.test("analytics: user_keys index, keysOfUser, deleteUser removes that user's rows and no one else's", async t => {
    const repo = new AnalyticsRepository(db)
    await repo.insertBatch([
      ev('miss', 100, { key: 'k1', userId: 'u1', profile: profileA, locale: 'en' }),
      ev('hit', 200, { key: 'k1', userId: 'u1' }),
      ev('hit', 150, { key: 'k2', userId: 'u1' }),
      ev('hit', 120, { key: 'k1', userId: 'u2' }),
      ev('hit', 130, { key: 'k3' })
    ])
    await repo.insertBatch([ev('hit', 50, { key: 'k1', userId: 'u1' }), ev('hit', 400, { key: 'k2', userId: 'u1' })])
    t.same(await repo.keysOfUser('u1'), ['k1', 'k2'])
    t.same(await repo.keysOfUser('u2'), ['k1'])
    t.same(await repo.keysOfUser('nobody'), [])
    const index = await db.query('SELECT user_id, key, first_seen, last_seen FROM user_keys ORDER BY user_id, key')
    t.same(index, [
      { user_id: 'u1', key: 'k1', first_seen: 50, last_seen: 200 },
      { user_id: 'u1', key: 'k2', first_seen: 150, last_seen: 400 },
      { user_id: 'u2', key: 'k1', first_seen: 120, last_seen: 120 }
    ], 'first_seen/last_seen span every batch')
    const narratives = new NarrativesRepository(db)
    await narratives.upsert('k1', narrative('k1'), 1, profileA, 'en')

    t.same(await repo.deleteUser('u1'), { analyticsRows: 5, indexRows: 2 })
    t.same(await repo.keysOfUser('u1'), [])
    t.same(await repo.keysOfUser('u2'), ['k1'], "another user's index is intact")
    const left = await db.query<{ user_id: string | null, n: number }>('SELECT user_id, count(*) AS n FROM analytics_events GROUP BY 1 ORDER BY 1')
    t.same(left, [{ user_id: 'u2', n: 1 }, { user_id: null, n: 1 }], "others' events (and anonymous ones) are intact")
    t.equal(await narratives.count(), 1, 'cached narratives are not user data: kept')
    t.equal((await db.query('SELECT 1 FROM requested_profiles')).length, 1, 'requested profiles kept')
    t.same(await repo.deleteUser('u1'), { analyticsRows: 0, indexRows: 0 }, 'deleting again deletes nothing')
  })

  t.test('analytics: hostile and odd values do not fail a batch', async t => {
    const repo = new AnalyticsRepository(db)
    const n = await repo.insertBatch([
      ev('hit', 0.6, { key: 'k\u0000nul', userId: 'u\u0000x', systems: ['Ve\u0000ga', 'bad\ud800surrogate', '', 7 as unknown as string] }),
      ev('generation', 2, { durationMs: 12.6, promptTokens: Number.NaN, completionTokens: 1e12, model: 'm\u0000' }),
      ev('miss', 3, { profile: { 'we\u0000ird': 'x\ud800', nested: [1, null, 'ok'] }, locale: 'en', userId: '' })
    ])
    t.equal(n, 3)
    const rows = await db.query<Record<string, unknown>>('SELECT at, key, user_id, systems, duration_ms, prompt_tokens, completion_tokens, model FROM analytics_events ORDER BY at')
    t.same(rows[0], { at: 1, key: 'knul', user_id: null, systems: ['Vega', 'bad\ufffdsurrogate'], duration_ms: null, prompt_tokens: null, completion_tokens: null, model: null })
    t.same(rows[1], { at: 2, key: 'k', user_id: null, systems: ['Arcturus'], duration_ms: 13, prompt_tokens: null, completion_tokens: 2_147_483_647, model: 'm' })
    t.equal(rows[2].user_id, null, 'an empty userId is no userId')
    t.same((await db.query('SELECT profile FROM requested_profiles'))[0], { profile: { weird: 'x\ufffd', nested: [1, null, 'ok'] } })
    // Cleaning 'u\u0000x' would make it 'ux', another user: such an id is not stored, and no lookup of it finds anyone's rows.
    t.same(await repo.keysOfUser('u\u0000x'), [], 'a user id PostgreSQL cannot hold as it is was not stored')
    t.same(await repo.keysOfUser('ux'), [], 'nor merged into the user it would be once cleaned')
    t.same(await repo.deleteUser('u\u0000x'), { analyticsRows: 0, indexRows: 0 })
  })

  t.test('analytics: one call writes a large batch', async t => {
    const repo = new AnalyticsRepository(db)
    const events = Array.from({ length: 5000 }, (_, i) => ev('hit', i, { key: `k${i % 50}`, userId: `u${i % 100}`, systems: ['Vega', 'Sirius'], profile: profileA, locale: 'en' }))
    t.equal(await repo.insertBatch(events), 5000)
    t.equal(await repo.insertBatch([]), 0)
    const [counts] = await db.query<{ events: number, index: number, profiles: number }>(
      'SELECT (SELECT count(*) FROM analytics_events) AS events, (SELECT count(*) FROM user_keys) AS index, (SELECT count(*) FROM requested_profiles) AS profiles')
    t.same(counts, { events: 5000, index: 100, profiles: 50 })
  })

  t.test('audit: insert and recent, newest first', async t => {
    const audit = new AuditRepository(db, { now: () => 5_000 })
    const id1 = await audit.insert({ at: 1_000, actor: 'admin-1', action: 'GET /api/narrative/stats', ip: '127.0.0.1', outcome: 'allowed', status: 200 })
    const id2 = await audit.insert({ at: 3_000, actor: null, action: 'DELETE /api/narrative/user/u1', ip: '10.0.0.9', outcome: 'denied', status: 403, detail: 'ip not allowed' })
    const id3 = await audit.insert({ action: 'POST /api/narrative/prewarm', ip: '::1', outcome: 'allowed', status: 200, detail: 'top 100' })
    t.ok(id1 < id2 && id2 < id3, 'ids increase')
    t.same(await audit.recent(2), [
      { id: id3, at: 5_000, actor: null, action: 'POST /api/narrative/prewarm', ip: '::1', outcome: 'allowed', status: 200, detail: 'top 100' },
      { id: id2, at: 3_000, actor: null, action: 'DELETE /api/narrative/user/u1', ip: '10.0.0.9', outcome: 'denied', status: 403, detail: 'ip not allowed' }
    ])
    t.equal((await audit.recent()).length, 3)
    t.same((await audit.recent(10))[2], { id: id1, at: 1_000, actor: 'admin-1', action: 'GET /api/narrative/stats', ip: '127.0.0.1', outcome: 'allowed', status: 200, detail: null })
    await t.rejects(audit.insert({ action: 'x', ip: 'y', outcome: 'maybe' as 'allowed', status: 200 }), TypeError)
  })

  t.test('audit: entries land in the order they were given, and only so many wait for a database that does not answer', async t => {
    // A database that holds every query until the gate opens (then the real one answers).
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    const held: Database = { ...db, query: async (text, params) => { await gate; return await db.query(text, params) } }
    const audit = new AuditRepository(held, { maxWaiting: 3 })
    const entry = (n: number) => ({ action: `GET /n/${n}`, ip: '127.0.0.1', outcome: 'allowed' as const, status: 200 })
    const first = [1, 2, 3].map(async n => await audit.insert(entry(n)))
    await t.rejects(audit.insert(entry(4)), /3 entries already wait/, 'a fourth waiting entry is refused')
    open()
    const ids = await Promise.all(first)
    t.ok(ids[0] < ids[1] && ids[1] < ids[2], 'written in the order given')
    t.same((await audit.recent(10)).map(e => e.action), ['GET /n/3', 'GET /n/2', 'GET /n/1'])
    t.ok(await audit.insert(entry(5)) > ids[2], 'room again once they are written')
  })
}

t.test('PostgreSQL', async t => {
  const db = await openPostgres(await uniqueDatabaseUrl(t))
  t.teardown(() => db.close())
  await migrate(db)
  t.equal(db.kind, 'postgres')
  repositorySuite(t, async () => db)
})

t.test('PGlite', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'nc-pglite-repo-'))
  const started = Date.now()
  const db = await openPglite(join(dir, 'pglite')) // once for the whole file
  t.comment(`PGlite open: ${Date.now() - started} ms`)
  t.teardown(async () => {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  })
  await migrate(db)
  t.equal(db.kind, 'pglite')
  repositorySuite(t, async () => db)
})
