// src/stream-relay.ts on the real Redis: a follower gets every item from the
// first, whenever it starts; it never hangs on a writer that died, and never
// passes on a sequence it could not follow from its start.
import t from 'tap'
import { Redis } from 'ioredis'
import { StreamRelay, type FollowEnd } from '../src/stream-relay.ts'
import { CircuitBreaker } from '../src/swr/breaker.ts'
import { sharedRedisUrl, uniquePrefix, type Teardownable } from './support/env.ts'

const redis = new Redis(await sharedRedisUrl(t))
t.teardown(() => redis.quit())

function relayOf (t: Teardownable, breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 60_000 }), ttlMs = 5000): StreamRelay {
  const relay = new StreamRelay({ redis, breaker, maxLength: 100, ttlMs, blockMs: 100 })
  t.teardown(() => relay.close())
  return relay
}

/** Follows a key; resolves with what came and how it ended. */
function follow (relay: StreamRelay, key: string): { stop: () => void, result: Promise<{ items: string[], how: FollowEnd }> } {
  const items: string[] = []
  let stop: (() => void) | undefined
  const result = new Promise<{ items: string[], how: FollowEnd }>(resolve => {
    stop = relay.follow(key, item => items.push(item), how => resolve({ items, how }))
  })
  if (stop === undefined) throw new Error('could not follow')
  return { stop, result }
}

const pause = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('a follower that starts midway gets every item from the first, then the end', async t => {
  const relay = relayOf(t)
  const key = uniquePrefix('relay')
  const writer = relay.writer(key)
  if (writer === undefined) throw new Error('no writer')
  writer.push('one')
  writer.push('two')
  await pause(50)
  const early = follow(relay, key)
  writer.push('three')
  writer.end('done')
  t.same(await early.result, { items: ['one', 'two', 'three'], how: 'done' })
  t.ok(await redis.pttl(key) <= 1000, 'an ended stream expires a second later')
})

t.test('a writer that ended before the follower connected: the follower still gets all of it', async t => {
  const relay = relayOf(t)
  const key = uniquePrefix('relay')
  const writer = relay.writer(key)
  writer?.push('quick')
  writer?.end('failed')
  await pause(50)
  t.same(await follow(relay, key).result, { items: ['quick'], how: 'failed' })
})

t.test('a writer that dies: the follower ends on its own, it never hangs; stop() ends it at once', async t => {
  const relay = relayOf(t, undefined, 1000)
  const key = uniquePrefix('relay')
  relay.writer(key)?.push('half')
  const f = follow(relay, key)
  const { items, how } = await f.result
  t.same(items, ['half'])
  t.equal(how, 'cut', 'nothing came for the stream\'s whole life')
  const g = follow(relay, uniquePrefix('relay'))
  g.stop()
  t.equal((await g.result).how, 'cut')
})

t.test('another writer replacing the stream midway, or a trimmed start: cut, never passed on as whole', async t => {
  const relay = relayOf(t)
  const key = uniquePrefix('relay')
  relay.writer(key)?.push('first writer')
  await pause(50)
  const f = follow(relay, key)
  await pause(50)
  relay.writer(key)?.push('second writer')
  t.same(await f.result, { items: ['first writer'], how: 'cut' })

  const trimmed = uniquePrefix('relay')
  await redis.xadd(trimmed, '*', 'i', 'a chunk whose begin was trimmed')
  t.same(await follow(relay, trimmed).result, { items: [], how: 'cut' })
})

t.test('an open breaker: no writer, no follower (the caller does without)', async t => {
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 60_000 })
  await breaker.run(async () => { throw new Error('down') }).catch(() => {})
  const relay = relayOf(t, breaker)
  t.equal(relay.writer('k'), undefined)
  t.equal(relay.follow('k', () => {}, () => {}), undefined)
})

t.test('items pushed in one tick go to Redis in one pipeline, in order, and end() sends what is pending first', async t => {
  // Counting on the real client: each pipeline is one write; a lone XADD is one write of its own.
  const counted = new Redis(await sharedRedisUrl(t))
  t.teardown(() => counted.quit())
  let pipelines = 0
  let loneAdds = 0
  const pipeline = counted.pipeline.bind(counted)
  const xadd = counted.xadd.bind(counted)
  counted.pipeline = ((...args: Parameters<typeof pipeline>) => { pipelines++; return pipeline(...args) }) as typeof counted.pipeline
  counted.xadd = ((...args: Parameters<typeof xadd>) => { loneAdds++; return xadd(...args) }) as typeof counted.xadd
  const relay = new StreamRelay({ redis: counted, breaker: new CircuitBreaker({ failureThreshold: 1, cooldownMs: 60_000 }), maxLength: 100, ttlMs: 5000, blockMs: 100 })
  t.teardown(() => relay.close())
  const key = uniquePrefix('relay')
  const writer = relay.writer(key)
  if (writer === undefined) throw new Error('no writer')
  const follower = follow(relay, key)
  for (const item of ['a', 'b', 'c', 'd', 'e']) writer.push(item)
  await pause(20)
  t.equal(pipelines, 1, 'five items of one tick: one pipeline')
  t.equal(loneAdds, 0)
  writer.push('f')
  await pause(20)
  t.equal(loneAdds, 1, 'a lone item: a plain XADD')
  writer.push('g')
  writer.push('h')
  writer.end('done')
  t.same(await follower.result, { items: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], how: 'done' }, 'every item, in order, the pending ones before the end')
  t.equal(pipelines, 2, 'the items pending at end() went out together before the end marker')
})
