import { Counter, Gauge as PromGauge, Histogram as PromHistogram, Registry } from 'prom-client'
import type { AvgMinMax, AvgMinMaxConfig, Gauge, GaugeConfig, Histogram, HistogramConfig, MetricsRegister } from '@libp2p/gossipsub/metrics'
import { NoodleError } from '../../common/errors.ts'
import { COUNTERS } from './counters.ts'

type Labels = Record<string, string | number>
/** What gossipsub's metric configs share (their `labelNames` type is a tuple of the label keys). */
interface MetricConfig { name: string, help: string, labelNames?: readonly string[] }

/** A metric was counted under a name that is not declared in COUNTERS, or with other labels than declared. */
export class MetricDeclarationError extends NoodleError {
  constructor (message: string) {
    super('ERR_METRIC_DECLARATION', message)
  }
}

/** One counter's series, by their labels; the labels are kept sorted by name, as `series()` joins their values. */
interface CounterFamily {
  readonly labelNames: readonly string[]
  readonly series: Map<string, { labels: Record<string, string>, value: number }>
}

function seriesKey (labels: Labels | undefined): string {
  if (labels == null) return ''
  return Object.keys(labels).sort().map((k) => `${k}=${String(labels[k])}`).join(',')
}

function sortedLabels (labels: Labels | undefined): Record<string, string> {
  return Object.fromEntries(Object.keys(labels ?? {}).sort().map((k) => [k, String((labels as Labels)[k])]))
}

/**
 * The agent's metrics, all in one prom-client registry (`GET /metrics` renders it): our counters (`inc`), and
 * gossipsub's counters, gauges and histograms (this is the MetricsRegister gossipsub reports into). Counters keep
 * their values here as well, because the gossip view and the broker's stats read them synchronously and
 * prom-client's reads are asynchronous; each is mirrored into its prom-client Counter when Prometheus scrapes.
 */
export class MetricsStore implements MetricsRegister {
  readonly registry = new Registry()
  private readonly counters = new Map<string, CounterFamily>()
  /** gossipsub's counters, as it declared them; like ours (COUNTERS), each is registered when first counted. */
  private readonly declarations = new Map<string, { help: string, labelNames: readonly string[] }>()
  /** gossipsub's `addCollect` functions: they set figures read at scrape time (cache sizes, peer scores). */
  private readonly collectors: Array<() => void> = []

  /** Counts `by` under a counter declared in COUNTERS (gossipsub's `_total` metrics come here too). */
  inc (name: string, labels?: Labels, by = 1): void {
    // A counter never goes down, and prom-client would refuse the whole scrape for a bad value.
    if (!(by >= 0 && Number.isFinite(by))) return
    const family = this.counters.get(name) ?? this.declaredCounter(name)
    const key = seriesKey(labels)
    const series = family.series.get(key)
    if (series !== undefined) series.value += by
    else family.series.set(key, { labels: this.checkedLabels(name, family, labels), value: by })
  }

  /** Current value of a counter's series; 0 when nothing was counted. */
  get (name: string, labels?: Labels): number {
    return this.counters.get(name)?.series.get(seriesKey(labels))?.value ?? 0
  }

  /** Sum of every series of a counter, whatever its labels. */
  sum (name: string): number {
    let total = 0
    for (const { value } of this.counters.get(name)?.series.values() ?? []) total += value
    return total
  }

  /** Every labelled series of a counter, keyed by its label values (in label-name order) joined with "/". */
  series (name: string): Record<string, number> {
    const out: Record<string, number> = {}
    for (const { labels, value } of this.counters.get(name)?.series.values() ?? []) {
      const values = Object.values(labels)
      if (values.length > 0) out[values.join('/')] = value
    }
    return out
  }

  /**
   * Runs gossipsub's scrape-time collectors; call it before rendering the registry. They set several metrics at
   * once, some registered before the one they hang on, so they cannot run inside prom-client's per-metric collect.
   */
  collect (): void {
    for (const fn of this.collectors) fn()
  }

  // --- gossipsub's MetricsRegister. Its metrics overload on label presence (`inc(value)` or `inc(labels, value)`),
  // which its conditional types express and an implementation cannot: each view is cast once, where it is built.

  /**
   * A gossipsub gauge; those named `_total` only ever count up, and are counters. Like every gossipsub metric, it
   * joins the registry when first used: a family nothing ever touched would only cost each scrape its lines.
   */
  gauge<L extends Labels = Record<string, never>> (config: GaugeConfig<L>): Gauge<L> {
    if (config.name.endsWith('_total')) {
      this.declarations.set(config.name, { help: config.help, labelNames: config.labelNames ?? [] })
      const counter = {
        inc: (a?: Labels | number, b?: number) => { typeof a === 'object' ? this.inc(config.name, a, b ?? 1) : this.inc(config.name, undefined, a ?? 1) },
        set: (a: Labels | number, b?: number) => { this.setCount(config.name, typeof a === 'object' ? a : undefined, typeof a === 'object' ? b ?? 0 : a) },
        addCollect: (fn: (metric: Gauge<L>) => void) => { this.collectors.push(() => { fn(counter as unknown as Gauge<L>) }) }
      }
      return counter as unknown as Gauge<L>
    }
    const gauge = this.lazily(() => new PromGauge(this.config(config)))
    const view = {
      inc: (a?: Labels | number, b?: number) => { typeof a === 'object' ? gauge().inc(a, b ?? 1) : gauge().inc(a ?? 1) },
      set: (a: Labels | number, b?: number) => { typeof a === 'object' ? gauge().set(a, b ?? 0) : gauge().set(a) },
      addCollect: (fn: (metric: Gauge<L>) => void) => { this.collectors.push(() => { fn(view as unknown as Gauge<L>) }) }
    }
    return view as unknown as Gauge<L>
  }

  histogram<L extends Labels = Record<string, never>> (config: HistogramConfig<L>): Histogram<L> {
    let made: PromHistogram | undefined
    const histogram = () => (made ??= new PromHistogram({ ...this.config(config), ...(config.buckets === undefined ? {} : { buckets: config.buckets }) }))
    const view = {
      observe: (a: Labels | number, b?: number) => { typeof a === 'object' ? histogram().observe(a, b ?? 0) : histogram().observe(a) },
      startTimer: () => {
        const end = histogram().startTimer()
        return () => { end() }
      },
      reset: () => { made?.reset() }
    }
    return view as unknown as Histogram<L>
  }

  /** A set of values seen at once (peer scores), as three gauges: `_avg`, `_min` and `_max`. */
  avgMinMax<L extends Labels = Record<string, never>> (config: AvgMinMaxConfig<L>): AvgMinMax<L> {
    const stats = this.lazily(() => (['avg', 'min', 'max'] as const).map((stat) => new PromGauge({
      ...this.config(config),
      name: `${config.name}_${stat}`,
      help: `${config.help} (${stat === 'avg' ? 'average' : stat === 'min' ? 'minimum' : 'maximum'})`
    })))
    const view = {
      set: (a: Labels | number[], b?: number[]) => {
        const [labels, values] = Array.isArray(a) ? [{}, a] : [a, b ?? []]
        const sum = values.reduce((s, v) => s + v, 0)
        const figures = values.length === 0 ? [0, 0, 0] : [sum / values.length, Math.min(...values), Math.max(...values)]
        stats().forEach((gauge, i) => { gauge.set(labels, figures[i] ?? 0) })
      }
    }
    return view as unknown as AvgMinMax<L>
  }

  /** `create`, called once, when the result is first asked for. */
  private lazily<T> (create: () => T): () => T {
    let made: T | undefined
    return () => (made ??= create())
  }

  private config (config: MetricConfig): { name: string, help: string, labelNames: string[], registers: Registry[] } {
    return { name: config.name, help: config.help, labelNames: [...config.labelNames ?? []], registers: [this.registry] }
  }

  /** Counters are declared (ours in COUNTERS, gossipsub's by itself) and registered when first counted. */
  private declaredCounter (name: string): CounterFamily {
    const declaration = this.declarations.get(name) ?? COUNTERS[name]
    if (declaration === undefined) throw new MetricDeclarationError(`${name} is not declared in agent/metrics/counters.ts`)
    return this.registerCounter(name, declaration.help, declaration.labelNames)
  }

  private registerCounter (name: string, help: string, labelNames: readonly string[]): CounterFamily {
    const family: CounterFamily = { labelNames: [...labelNames].sort(), series: new Map() }
    new Counter({
      ...this.config({ name, help, labelNames }),
      // The values live in the family; the prom-client counter shows them as they are at each scrape.
      collect () {
        this.reset()
        for (const { labels, value } of family.series.values()) this.inc(labels, value)
      }
    })
    this.counters.set(name, family)
    return family
  }

  /** gossipsub's `set` on a counter (it never calls it): the series takes the value. */
  private setCount (name: string, labels: Labels | undefined, value: number): void {
    this.inc(name, labels, 0)
    const series = this.counters.get(name)?.series.get(seriesKey(labels))
    if (series !== undefined && value >= 0 && Number.isFinite(value)) series.value = value
  }

  /** A new series' labels must be those its counter declares: prom-client would refuse the scrape otherwise. */
  private checkedLabels (name: string, family: CounterFamily, labels: Labels | undefined): Record<string, string> {
    const sorted = sortedLabels(labels)
    const names = Object.keys(sorted)
    if (names.length !== family.labelNames.length || names.some((n, i) => n !== family.labelNames[i])) {
      throw new MetricDeclarationError(`${name} is counted with labels {${names.join(',')}}, declared {${family.labelNames.join(',')}}`)
    }
    return sorted
  }
}
