import { normalizeIP } from '@fastify/rate-limit'

/**
 * Who a rate limit counts: an IPv4 address as it is, an IPv6 address by its
 * /64. One IPv6 client (a home, a server) is routinely given a whole /64 and
 * can rotate through its addresses at will; counting each address apart would
 * let it multiply any limit by 2^64. IPv4-mapped addresses count as IPv4.
 *
 * @fastify/rate-limit's own keying (its exported normalizeIP, the key of its
 * default keyGenerator with `ipv6Subnet: 64`), so the admin routes' limit
 * (plugins/rate-limit.ts, the plugin's default key) and the generation limit
 * (src/narrative/service.ts, through this function) count a client alike. A
 * zone id (`fe80::1%eth0`) is dropped first; anything that is not an address
 * is returned unchanged.
 */
export const IPV6_SUBNET = 64

export function rateLimitKey (ip: string): string {
  try {
    return normalizeIP(ip.replace(/%.*$/, ''), IPV6_SUBNET)
  } catch {
    return ip
  }
}
