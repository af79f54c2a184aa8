import t from 'tap'
import fc from 'fast-check'
import { MemoryStore } from '../src/swr/memory-store.ts'
import { versionOf, withVersion } from '../src/swr/store.ts'

function setup (maxBytes = 1_000_000) {
  let now = 1_000_000
  const store = new MemoryStore({ maxBytes, clock: () => now })
  return { store, advance: (ms: number) => { now += ms } }
}

const text = async (p: Promise<Buffer | null>) => (await p)?.toString() ?? null
const tick = () => new Promise(resolve => setImmediate(resolve))

t.test('constructor rejects a non-positive maxBytes', async t => {
  t.throws(() => new MemoryStore({ maxBytes: 0 }), /maxBytes/)
  t.throws(() => new MemoryStore({ maxBytes: NaN }), /maxBytes/)
})

t.test('TTL: a value lives until its expiry and not a millisecond longer', async t => {
  const { store, advance } = setup()
  await store.set('k', 'v', 100)
  advance(99)
  t.equal(await text(store.get('k')), 'v')
  advance(1)
  t.equal(await store.get('k'), null)
  t.same(await store.info(), { keys: 0, memoryUsedBytes: 0 }, 'an expired read frees the slot')
  t.same(store.keys(), [])
})

t.test('keys() skips expired entries', async t => {
  const { store, advance } = setup()
  await store.set('short', 'v', 10)
  await store.set('long', 'v', 1000)
  advance(10)
  t.same(store.keys(), ['long'])
})

t.test('LRU: the least recently read entry is evicted first', async t => {
  // each entry is 1-byte key + 9-byte value = 10 bytes; room for 3
  const { store } = setup(30)
  await store.set('a', 'aaaaaaaaa', 1e6)
  await store.set('b', 'bbbbbbbbb', 1e6)
  await store.set('c', 'ccccccccc', 1e6)
  t.equal(await text(store.get('a')), 'aaaaaaaaa', 'reading a makes b the oldest')
  await store.set('d', 'ddddddddd', 1e6)
  t.equal(await store.get('b'), null, 'b evicted')
  t.equal(await text(store.get('a')), 'aaaaaaaaa')
  t.equal(await text(store.get('c')), 'ccccccccc')
  t.equal(await text(store.get('d')), 'ddddddddd')
  t.same(await store.info(), { keys: 3, memoryUsedBytes: 30 })
})

t.test('a value larger than maxBytes is not stored and evicts nothing else', async t => {
  const { store } = setup(30)
  await store.set('a', 'aaaaaaaaa', 1e6)
  await store.set('big', 'x'.repeat(40), 1e6)
  t.equal(await store.get('big'), null)
  t.equal(await text(store.get('a')), 'aaaaaaaaa')
})

t.test('setIfNewer: newer wins, older or equal is refused', async t => {
  const { store } = setup()
  t.equal(await store.setIfNewer('k', withVersion(100, Buffer.from('first')), 100, 1e6), true)
  t.equal(await store.setIfNewer('k', withVersion(99, Buffer.from('older')), 99, 1e6), false)
  t.equal(await store.setIfNewer('k', withVersion(100, Buffer.from('equal')), 100, 1e6), false)
  let stored = await store.get('k')
  t.equal(stored?.subarray(13).toString(), 'first')
  t.equal(await store.setIfNewer('k', withVersion(101, Buffer.from('newer')), 101, 1e6), true)
  stored = await store.get('k')
  t.equal(versionOf(stored!), 101)
  t.equal(stored?.subarray(13).toString(), 'newer')
})

t.test('setIfNewer replaces an unversioned or corrupt value', async t => {
  const { store } = setup()
  await store.set('k', 'not versioned', 1e6)
  t.equal(await store.setIfNewer('k', withVersion(0, Buffer.from('v0')), 0, 1e6), true, 'even version 0 beats a corrupt value')
  await store.set('k2', '12345678901x2', 1e6)
  t.equal(await store.setIfNewer('k2', withVersion(5, Buffer.from('v')), 5, 1e6), true)
})

t.test('setIfNewer ignores an expired entry', async t => {
  const { store, advance } = setup()
  await store.setIfNewer('k', withVersion(500, Buffer.from('old')), 500, 10)
  advance(10)
  t.equal(await store.setIfNewer('k', withVersion(1, Buffer.from('new')), 1, 10), true)
})

t.test('acquireLock is NX and expires', async t => {
  const { store, advance } = setup()
  t.equal(await store.acquireLock('lock:k', 'tok-a', 100), true)
  t.equal(await store.acquireLock('lock:k', 'tok-b', 100), false, 'held')
  t.equal(await text(store.get('lock:k')), 'tok-a', 'the failed attempt did not overwrite the token')
  advance(100)
  t.equal(await store.acquireLock('lock:k', 'tok-b', 100), true, 'free again after its TTL')
  t.equal(await text(store.get('lock:k')), 'tok-b')
})

t.test('releaseLock frees only with the right token', async t => {
  const { store } = setup()
  await store.acquireLock('lock:k', 'mine', 1000)
  t.equal(await store.releaseLock('lock:k', 'theirs'), false)
  t.equal(await store.releaseLock('lock:k', 'min'), false, 'a prefix is not the token')
  t.equal(await store.acquireLock('lock:k', 'theirs', 1000), false, 'still held after wrong-token releases')
  t.equal(await store.releaseLock('lock:k', 'mine'), true)
  t.equal(await store.releaseLock('lock:k', 'mine'), false, 'already free')
  t.equal(await store.acquireLock('lock:k', 'theirs', 1000), true)
})

t.test('releaseLock does not free a lock that expired and was taken by someone else', async t => {
  const { store, advance } = setup()
  await store.acquireLock('lock:k', 'first', 50)
  advance(50)
  await store.acquireLock('lock:k', 'second', 50)
  t.equal(await store.releaseLock('lock:k', 'first'), false)
  t.equal(await text(store.get('lock:k')), 'second')
})

t.test('publish delivers asynchronously; unsubscribe stops delivery', async t => {
  const { store } = setup()
  const got: string[] = []
  const other: string[] = []
  const stop = await store.subscribe('ch', m => got.push(m))
  await store.subscribe('other', m => other.push(m))
  await store.publish('ch', 'one')
  t.same(got, [], 'not delivered inline')
  await tick()
  t.same(got, ['one'])
  t.same(other, [], 'channels are separate')
  await stop()
  await store.publish('ch', 'two')
  await tick()
  t.same(got, ['one'])
})

t.test('info() counts keys and the bytes of keys plus values; del and close free them', async t => {
  const { store } = setup()
  t.same(await store.info(), { keys: 0, memoryUsedBytes: 0 })
  await store.set('ab', '12345', 1e6)
  await store.set('c', '1', 1e6)
  t.same(await store.info(), { keys: 2, memoryUsedBytes: 2 + 5 + 1 + 1 })
  await store.set('ab', '1', 1e6)
  t.same(await store.info(), { keys: 2, memoryUsedBytes: 2 + 1 + 1 + 1 }, 'overwrite replaces the old size')
  t.equal(await store.del('ab'), 1)
  t.equal(await store.del('ab'), 0)
  t.same(await store.info(), { keys: 1, memoryUsedBytes: 2 })
  await store.close()
  t.same(await store.info(), { keys: 0, memoryUsedBytes: 0 })
})

type Op = { op: 'set', key: string, size: number } | { op: 'get', key: string } | { op: 'del', key: string }
const keyArb = fc.constantFrom('a', 'bb', 'ccc', 'dddd', 'narr:v1:x', 'lock:narr:v1:x')
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key: keyArb, size: fc.integer({ min: 0, max: 80 }) }),
  fc.record({ op: fc.constant('get' as const), key: keyArb }),
  fc.record({ op: fc.constant('del' as const), key: keyArb })
)

t.test('property: byte accounting stays within maxBytes and matches what is held', async t => {
  await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 120 }), fc.array(opArb, { maxLength: 80 }), async (maxBytes, ops) => {
    const store = new MemoryStore({ maxBytes, clock: () => 0 })
    for (const o of ops) {
      if (o.op === 'set') await store.set(o.key, 'v'.repeat(o.size), 1e9)
      else if (o.op === 'get') await store.get(o.key)
      else await store.del(o.key)
      const info = await store.info()
      if (info.memoryUsedBytes > maxBytes || info.memoryUsedBytes < 0) return false
      let held = 0
      for (const key of store.keys()) held += key.length + (await store.get(key))!.length
      if (held !== info.memoryUsedBytes || store.keys().length !== info.keys) return false
    }
    return true
  }), { numRuns: 300 })
  t.pass('accounting held')
})
