/**
 * A route's hooks of one kind (as an onRoute hook finds them: none, one, or a
 * list) with `hook` added last: for the onRoute hooks that give every route a
 * hook of their own (src/app.ts, plugins/metrics.ts).
 */
export function withHook<H> (existing: H | H[] | undefined, hook: H): H[] {
  return existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook]
}
