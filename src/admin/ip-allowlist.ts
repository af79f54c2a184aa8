import { BlockList, isIP } from 'node:net'

/**
 * IPs and CIDRs allowed on admin routes, IPv4 and IPv6. An IPv4-mapped IPv6
 * address (`::ffff:127.0.0.1`, as a dual-stack socket reports IPv4 peers) is
 * checked as the IPv4 address it carries, so one list entry covers both forms.
 */
export class IpAllowlist {
  private readonly list = new BlockList()

  readonly entries: string[]

  constructor (entries: string[]) {
    this.entries = entries
    for (const entry of entries) {
      const [address, bits] = entry.split('/')
      const plain = unmap(address)
      const family = isIP(plain)
      if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR`)
      const type = family === 4 ? 'ipv4' : 'ipv6'
      if (bits === undefined) {
        this.list.addAddress(plain, type)
        continue
      }
      let prefix = Number(bits)
      // A mapped CIDR (::ffff:10.0.0.0/104) is the IPv4 CIDR 10.0.0.0/8.
      if (plain !== address) prefix -= 96
      const max = family === 4 ? 32 : 128
      if (!/^[0-9]{1,3}$/.test(bits) || prefix < 0 || prefix > max) throw new Error(`"${entry}" has a prefix length outside 0-${max}`)
      this.list.addSubnet(plain, prefix, type)
    }
  }

  allows (ip: string | undefined): boolean {
    if (ip === undefined) return false
    // A zone id (%eth0) belongs to IPv6 link-local addresses only; on anything else it is a trick.
    if (ip.includes('%') && !ip.includes(':')) return false
    const plain = unmap(ip.replace(/%.*$/, ''))
    const family = isIP(plain)
    if (family === 0) return false
    return this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6')
  }
}

/** `::ffff:1.2.3.4` (any case, with or without the zero groups) to `1.2.3.4`. */
export function unmap (ip: string): string {
  const m = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip)
  return m !== null && isIP(m[1]) === 4 ? m[1] : ip
}
