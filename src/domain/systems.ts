/**
 * Star-system names as the key and the prompt carry them. A name is
 * compared with its spaces trimmed and runs of spaces made one: "Vega " and
 * "Vega" are one system (trim-then-match), so they are one key.
 */
export function canonicalName (name: string): string {
  return name.trim().replace(/ {2,}/g, ' ')
}

/**
 * The known systems (SYSTEMS), when the operator gives them: a name is
 * matched case-insensitively to its catalogue spelling, so `VEGA` and `Vega`
 * are one key, and a name that is not in the catalogue is refused rather than
 * paid for (and written into a prompt). Without a catalogue, names are
 * labels: only their spaces are canonicalized, their case is kept.
 */
export class SystemCatalogue {
  private readonly spellings = new Map<string, string>()

  constructor (names: readonly string[]) {
    for (const raw of names) {
      const name = canonicalName(raw)
      const folded = name.toLowerCase()
      const known = this.spellings.get(folded)
      if (known !== undefined) throw new Error(`the catalogue names "${known}" twice ("${raw}")`)
      this.spellings.set(folded, name)
    }
    if (this.spellings.size === 0) throw new Error('the catalogue names no system')
  }

  /** The catalogue spelling of a name, or undefined when it is not a known system. */
  spellingOf (name: string): string | undefined {
    return this.spellings.get(canonicalName(name).toLowerCase())
  }

  get size (): number {
    return this.spellings.size
  }
}
