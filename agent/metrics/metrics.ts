import type { MetricsRegister } from '@libp2p/gossipsub/metrics'

type Labels = Record<string, string | number>

interface MetricConfig {
  name: string
  help?: string
  labelNames?: readonly string[]
  buckets?: number[]
}

function seriesKey (name: string, labels?: Labels): string {
  if (labels == null) return name
  const parts = Object.keys(labels).sort().map((k) => `${k}=${String(labels[k])}`)
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`
}

/**
 * A small in-memory register that gossipsub reports into (bytes and messages in and out, invalid messages by
 * reason, mis-signed included). It keeps plain numbers by series; the Prometheus endpoint can render them later.
 */
export class MetricsStore implements MetricsRegister {
  private readonly values = new Map<string, number>()
  /** What each series is, by its key: for rendering (GET /metrics). */
  private readonly described = new Map<string, { name: string, labels: Record<string, string> }>()
  private readonly collectors: Array<() => void> = []

  /** Current value of a series; 0 when nothing was recorded. */
  get (name: string, labels?: Labels): number {
    return this.values.get(seriesKey(name, labels)) ?? 0
  }

  /** Sum of every series of a metric, whatever its labels. */
  sum (name: string): number {
    let total = 0
    for (const [key, value] of this.values) {
      if (key === name || key.startsWith(`${name}{`)) total += value
    }
    return total
  }

  /** Every series of a metric, keyed by its label values joined with "/". */
  series (name: string): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [key, value] of this.values) {
      if (!key.startsWith(`${name}{`)) continue
      const labels = key.slice(name.length + 1, -1).split(',').map((kv) => kv.slice(kv.indexOf('=') + 1))
      out[labels.join('/')] = value
    }
    return out
  }

  inc (name: string, labels?: Labels, by = 1): void {
    this.set(name, labels, this.get(name, labels) + by)
  }

  /** Every series: its metric name, its labels and its value. */
  entries (): Array<{ name: string, labels: Record<string, string>, value: number }> {
    return [...this.values].map(([key, value]) => ({ ...this.described.get(key) as { name: string, labels: Record<string, string> }, value }))
  }

  private set (name: string, labels: Labels | undefined, value: number): void {
    const key = seriesKey(name, labels)
    if (!this.described.has(key)) {
      this.described.set(key, { name, labels: Object.fromEntries(Object.entries(labels ?? {}).map(([k, v]) => [k, String(v)])) })
    }
    this.values.set(key, value)
  }

  collect (): void {
    for (const fn of this.collectors) fn()
  }

  // --- MetricsRegister (gossipsub's interface). Its call shapes overload on label presence, hence the `any`s.
  gauge (config: MetricConfig): any {
    const set = (a: Labels | number, b?: number) => typeof a === 'number'
      ? this.set(config.name, undefined, a)
      : this.set(config.name, a, b ?? 0)
    const inc = (a?: Labels | number, b?: number) => typeof a === 'object'
      ? this.inc(config.name, a, b ?? 1)
      : this.inc(config.name, undefined, a ?? 1)
    const gauge = { set, inc, addCollect: (fn: (g: unknown) => void) => { this.collectors.push(() => { fn(gauge) }) } }
    return gauge
  }

  histogram (config: MetricConfig): any {
    const observe = (a: Labels | number, b?: number) => {
      const labels = typeof a === 'number' ? undefined : a
      const value = typeof a === 'number' ? a : (b ?? 0)
      this.inc(`${config.name}_count`, labels)
      this.inc(`${config.name}_sum`, labels, value)
    }
    return {
      observe,
      startTimer: () => {
        const start = performance.now()
        return () => { observe((performance.now() - start) / 1000) }
      },
      reset: () => {}
    }
  }

  avgMinMax (): any {
    return { set: () => {} }
  }
}
