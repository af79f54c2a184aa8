import type { Registry } from 'prom-client'

/**
 * A counter and a histogram for the hit path, registered in a prom-client
 * Registry like any of its own metrics, exposed in the same text (and summed
 * across workers the same way), but whose inc() and observe() are plain
 * arithmetic on a series made once per label set. prom-client's own
 * validate and hash the labels on every call, even through labels(): on a
 * hit, those calls were the largest share of the app's own CPU per hit
 * (bench/RESULTS.md, issue 16). Only what the app uses is here.
 */

type Labels = Record<string, string | number>
interface Exposed { labels: Labels, value: number, metricName?: string }
interface MetricData { name: string, help: string, type: 'counter' | 'histogram', values: Exposed[], aggregator: 'sum' }

interface HotOptions { name: string, help: string, labelNames?: readonly string[], registers: Registry[] }

/** The label set of `values`, checked against the metric's label names (once per label set, not per call). */
function labelsOf (name: string, labelNames: readonly string[], values: readonly string[]): Labels {
  if (values.length !== labelNames.length) throw new TypeError(`${name} takes ${labelNames.length} label value(s) (${labelNames.join(', ')}), got ${values.length}`)
  return Object.fromEntries(labelNames.map((label, i) => [label, values[i]]))
}

abstract class HotMetric<S> {
  name: string
  readonly help: string
  readonly aggregator = 'sum' as const
  protected readonly labelNames: readonly string[]
  /** Every series made, in the order made: what get() exposes. */
  readonly #series: Array<{ labels: Labels, series: S }> = []
  /**
   * The series by label values, one Map level per label: a lookup of the
   * values as they come, with no string joined on every call (the two-label
   * latency histogram is observed on every answer).
   */
  #byValues = new Map<string, unknown>()

  constructor (opts: HotOptions) {
    this.name = opts.name
    this.help = opts.help
    this.labelNames = opts.labelNames ?? []
    // prom-client's Registry takes any object with its metrics' get()/reset() contract.
    for (const registry of opts.registers) registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0])
  }

  protected abstract newSeries (): S

  /** The series of these label values: keep it, and call it on the hot path. */
  labels (...values: string[]): S {
    // Checked on every call, not only when a series is made: the levels must all be Maps but the last.
    if (values.length !== this.labelNames.length) labelsOf(this.name, this.labelNames, values)
    const last = values.length - 1
    let level = this.#byValues
    for (let i = 0; i < last; i++) {
      let next = level.get(values[i]) as Map<string, unknown> | undefined
      if (next === undefined) {
        next = new Map()
        level.set(values[i], next)
      }
      level = next
    }
    const id = last < 0 ? '' : values[last]
    let series = level.get(id) as S | undefined
    if (series === undefined) {
      series = this.newSeries()
      this.#series.push({ labels: labelsOf(this.name, this.labelNames, values), series })
      level.set(id, series)
    }
    return series
  }

  protected get series (): Iterable<{ labels: Labels, series: S }> {
    return this.#series
  }

  reset (): void {
    this.#series.length = 0
    this.#byValues = new Map()
  }
}

export class CounterSeries {
  value = 0
  inc (by = 1): void {
    if (!(by >= 0) || !Number.isFinite(by)) throw new TypeError(`a counter only goes up by a finite amount, not ${by}`)
    this.value += by
  }
}

export class HotCounter extends HotMetric<CounterSeries> {
  readonly type = 'counter' as const

  protected newSeries (): CounterSeries { return new CounterSeries() }

  /** For a counter without labels. */
  inc (by = 1): void { this.labels().inc(by) }

  async get (): Promise<MetricData> {
    const values = [...this.series].map(({ labels, series }) => ({ labels: { ...labels }, value: series.value }))
    // A counter without labels is always exposed, at 0 before its first inc(), as prom-client does.
    if (values.length === 0 && this.labelNames.length === 0) values.push({ labels: {}, value: 0 })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}

export class HistogramSeries {
  readonly #bounds: readonly number[]
  /** Observations per bucket (not cumulative); the last is above every bound. */
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor (bounds: readonly number[]) {
    this.#bounds = bounds
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`a histogram observes finite numbers, not ${value}`)
    const bounds = this.#bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]) i++
    this.counts[i]++
    this.sum += value
    this.count++
  }
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  readonly type = 'histogram' as const
  readonly #bounds: readonly number[]

  constructor (opts: HotOptions & { buckets: readonly number[] }) {
    super(opts)
    this.#bounds = [...opts.buckets].sort((a, b) => a - b)
  }

  protected newSeries (): HistogramSeries { return new HistogramSeries(this.#bounds) }

  /** As prom-client writes a histogram: cumulative buckets (`le`), `+Inf`, then `_sum` and `_count`, per label set. */
  async get (): Promise<MetricData> {
    const values: Exposed[] = []
    for (const { labels, series } of this.series) {
      let cumulative = 0
      this.#bounds.forEach((le, i) => {
        cumulative += series.counts[i]
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` })
      })
      values.push({ labels: { le: '+Inf', ...labels }, value: series.count, metricName: `${this.name}_bucket` })
      values.push({ labels: { ...labels }, value: series.sum, metricName: `${this.name}_sum` })
      values.push({ labels: { ...labels }, value: series.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
