import { IpAllowlist } from './admin/ip-allowlist.ts'
import type { TrustProxy } from './config.ts'

/** Fastify's `trustProxy` option: which hops' X-Forwarded-For entries request.ip may come from. */
export type FastifyTrustProxy = false | ((address: string, hop: number) => boolean)

/**
 * TRUST_PROXY as Fastify's option. Fastify (proxy-addr) walks X-Forwarded-For
 * from the socket towards the left and stops at the first address it does not
 * trust: that one is the client. Only the named proxies (or the last `hops`)
 * are trusted, so whatever a client writes to the left of the address its
 * proxy appended is never read. The addresses are matched like the admin
 * allowlist (CIDRs, IPv4-mapped IPv6 as IPv4), never `true`.
 *
 * A hop count is a function too: Fastify 5 takes a number for "trust
 * nothing" (it cannot check the peer). `hops: 1` trusts the socket's peer and
 * takes the right-most X-Forwarded-For entry as the client; that is sound only
 * when the server cannot be reached except through that many proxies.
 */
export function fastifyTrustProxy (trust: TrustProxy): FastifyTrustProxy {
  if (trust === false) return false
  if ('hops' in trust) {
    const { hops } = trust
    // proxy-addr numbers the socket's peer 0, the right-most X-Forwarded-For entry 1, and so on.
    return (_address, hop) => hop < hops
  }
  const proxies = new IpAllowlist(trust.proxies)
  return address => proxies.allows(address)
}
