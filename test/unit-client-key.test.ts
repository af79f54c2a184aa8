import t from 'tap'
import { rateLimitKey } from '../src/client-key.ts'

t.test('rateLimitKey: IPv4 as it is, IPv6 by its /64, mapped IPv4 as IPv4', async t => {
  const cases: Array<[string, string]> = [
    ['203.0.113.9', '203.0.113.9'],
    ['::ffff:203.0.113.9', '203.0.113.9'],
    ['::FFFF:10.9.4.4', '10.9.4.4'],
    ['2001:db8:1:2::a', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff:0:0:c', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b:1:2::192.0.2.33', '64:ff9b:1:2::/64'],
    ['unknown', 'unknown']
  ]
  for (const [ip, key] of cases) t.equal(rateLimitKey(ip), key, ip)
})

t.test('rateLimitKey: addresses of one /64 share a key; neighbouring /64s do not', async t => {
  const inside = ['2001:db8:aa:bb::1', '2001:db8:aa:bb:ffff:ffff:ffff:ffff', '2001:db8:aa:bb:1234::9']
  t.same(new Set(inside.map(rateLimitKey)).size, 1)
  t.not(rateLimitKey('2001:db8:aa:bc::1'), rateLimitKey('2001:db8:aa:bb::1'))
})
