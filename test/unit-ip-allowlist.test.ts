import t from 'tap'
import { IpAllowlist, unmap } from '../src/admin/ip-allowlist.ts'

t.test('addresses and CIDRs, IPv4 and IPv6, mapped forms', async t => {
  const list = new IpAllowlist(['127.0.0.1', '::1', '10.1.0.0/16', '2001:db8::/32'])
  const cases: Array<[string | undefined, boolean]> = [
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['::FFFF:127.0.0.1', true],
    ['0:0:0:0:0:ffff:127.0.0.1', true],
    ['::1', true],
    ['0:0:0:0:0:0:0:1', true],
    ['10.1.200.3', true],
    ['::ffff:10.1.200.3', true],
    ['10.2.0.1', false],
    ['2001:db8:abcd::1', true],
    ['2001:db9::1', false],
    ['127.0.0.2', false],
    ['::ffff:127.0.0.2', false],
    ['not-an-ip', false],
    ['127.0.0.1, 10.1.0.1', false],
    ['', false],
    [undefined, false]
  ]
  for (const [ip, allowed] of cases) t.equal(list.allows(ip), allowed, `${String(ip)} ${allowed ? 'allowed' : 'refused'}`)
})

t.test('an IPv4-mapped CIDR covers the IPv4 range', async t => {
  const list = new IpAllowlist(['::ffff:192.168.0.0/112'])
  t.ok(list.allows('192.168.3.4'))
  t.notOk(list.allows('192.169.0.1'))
})

t.test('bad entries are refused', async t => {
  t.throws(() => new IpAllowlist(['300.1.1.1']), /not an IP/)
  t.throws(() => new IpAllowlist(['10.0.0.0/33']), /prefix length/)
  t.throws(() => new IpAllowlist(['::/129']), /prefix length/)
  t.equal(unmap('::ffff:1.2.3.4'), '1.2.3.4')
  t.equal(unmap('fe80::1'), 'fe80::1')
})

t.test('a zone id on an IPv4 address is refused, not stripped', async t => {
  const list = new IpAllowlist(['127.0.0.1', '::1'])
  t.notOk(list.allows('127.0.0.1%lo'))
  t.ok(list.allows('::1%lo'))
})
