/**
 * The one spelling of a BCP 47 tag (`EN-us` is `en-US`, `iw` is `he`), or
 * undefined when the tag is not well-formed (`en-zz99`): an invalid tag is
 * refused, never a new key.
 */
export function canonicalLocale (tag: string): string | undefined {
  if (spellings.has(tag)) return spellings.get(tag)
  let canonical: string | undefined
  try {
    canonical = Intl.getCanonicalLocales(tag)[0]
  } catch {
    canonical = undefined
  }
  // Bounded: tags are few in practice, but any string can be sent.
  if (spellings.size >= SPELLINGS_KEPT) spellings.clear()
  spellings.set(tag, canonical)
  return canonical
}

/**
 * The tags already canonicalized, as sent. ICU's canonicalization is on the
 * path of every request whose body is new to this process (every miss), and
 * after the idle wait a miss follows it took about 50 µs there, against a
 * few µs for a map lookup (measured on the bench machine).
 */
const spellings = new Map<string, string | undefined>()
const SPELLINGS_KEPT = 1000

/**
 * The served locale for a canonical tag, when the operator limits them
 * (LOCALES): the tag itself if it is served, else the nearest served tag by
 * RFC 4647 lookup (`en-GB` falls back to `en`, `zh-Hant-TW` to `zh-Hant`,
 * then `zh`); undefined when none is served.
 */
export function servedLocale (canonical: string, served: ReadonlySet<string>): string | undefined {
  let tag = canonical
  for (;;) {
    if (served.has(tag)) return tag
    const cut = tag.lastIndexOf('-')
    if (cut === -1) return undefined
    tag = tag.slice(0, cut)
    // A singleton (the x of -x-private, the u of -u-ca-…) never stands alone at the end.
    if (tag.length >= 2 && tag[tag.length - 2] === '-') tag = tag.slice(0, -2)
  }
}
