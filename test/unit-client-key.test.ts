import t from 'tap'
import { rateLimitKey } from '../src/client-key.ts'

t.test('rateLimitKey: IPv4 as it is, IPv6 by the first address of its /64 (@fastify/rate-limit\'s normalizeIP), mapped IPv4 as IPv4', async t => {
  const cases: Array<[string, string]> = [
    ['203.0.113.9', '203.0.113.9'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['::FFFF:10.9.4.4', '10.9.4.4'],
    ['2001:db8:1:2::a', '2001:db8:1:2::'],
    ['2001:0DB8:0001:0002:ffff:0:0:c', '2001:db8:1:2::'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::'],
    ['2001:db8::1', '2001:db8::'],
    ['::1', '::'],
    ['fe80::1%eth0', 'fe80::'],
    ['64:ff9b:1:2::192.0.2.33', '64:ff9b:1:2::'],
    ['unknown', 'unknown']
  ]
  for (const [ip, key] of cases) t.equal(rateLimitKey(ip), key, ip)
})

t.test('rateLimitKey: addresses of one /64 share a key; neighbouring /64s do not', async t => {
  const inside = ['2001:db8:aa:bb::1', '2001:db8:aa:bb:ffff:ffff:ffff:ffff', '2001:db8:aa:bb:1234::9']
  t.same(new Set(inside.map(rateLimitKey)).size, 1)
  t.not(rateLimitKey('2001:db8:aa:bc::1'), rateLimitKey('2001:db8:aa:bb::1'))
})

t.test('rateLimitKey is @fastify/rate-limit\'s own key with a /64: the admin and generation limits count a client alike', async t => {
  const { normalizeIP } = await import('@fastify/rate-limit')
  for (const ip of ['203.0.113.9', '2001:db8:aa:bb:1234::9', '::ffff:10.0.0.1']) t.equal(rateLimitKey(ip), normalizeIP(ip, 64), ip)
})
