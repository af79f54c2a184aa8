import { isIP } from 'node:net'
import { unmap } from './admin/ip-allowlist.ts'

/**
 * Who a rate limit counts: an IPv4 address as it is, an IPv6 address by its
 * /64. One IPv6 client (a home, a server) is routinely given a whole /64 and
 * can rotate through its addresses at will; counting each address apart would
 * let it multiply any limit by 2^64. IPv4-mapped addresses count as IPv4.
 * Anything that is not an address is returned unchanged.
 */
export function rateLimitKey (ip: string): string {
  const plain = unmap(ip.replace(/%.*$/, ''))
  const family = isIP(plain)
  if (family === 4) return plain
  if (family !== 6) return ip
  return `${expandIpv6(plain).slice(0, 4).join(':')}::/64`
}

/** The eight groups of an IPv6 address, lowercase, without leading zeros. */
function expandIpv6 (address: string): string[] {
  let text = address.toLowerCase()
  // An IPv4 tail (64:ff9b::1.2.3.4) is two groups.
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (tail !== null) {
    const [a, b, c, d] = tail.slice(1).map(Number)
    text = text.slice(0, tail.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, rest] = text.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  return groups.map(g => Number.parseInt(g, 16).toString(16))
}
