import { Histogram } from 'prom-client'
import type { Registry } from 'prom-client'

/** Inference and camera latencies: from a sub-millisecond classifier to a detector on a slow box. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

/**
 * The latencies observed as they happen (the rest of `/metrics` is read at scrape time, see PrometheusMetrics):
 * apart, so the runtime and the cameras that report them are built before what the scrape reads of them.
 */
export class LatencyMetrics {
  private readonly registry: Registry
  /** Registered from start() to stop(); what is observed outside that is not counted. */
  private histograms: { inference: Histogram<'model'>, camera: Histogram<'camera'> } | undefined

  constructor ({ registry }: { registry: Registry }) {
    this.registry = registry
  }

  start (): void {
    const registers = [this.registry]
    this.histograms = {
      inference: new Histogram({ name: 'noodle_inference_seconds', help: 'Inference time per model (in the worker).', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers }),
      camera: new Histogram({ name: 'noodle_camera_latency_seconds', help: 'Decode to result, per camera.', labelNames: ['camera'], buckets: LATENCY_BUCKETS, registers })
    }
  }

  stop (): void {
    this.registry.removeSingleMetric('noodle_inference_seconds')
    this.registry.removeSingleMetric('noodle_camera_latency_seconds')
    this.histograms = undefined
  }

  /** One inference of `model` took `ms` (labelled by the id's first 12 characters, as `noodle models` shows it). */
  observeInference (model: string, ms: number): void {
    this.histograms?.inference.observe({ model: model.slice(0, 12) }, ms / 1000)
  }

  observeCameraResult (camera: string, latencyMs: number): void {
    this.histograms?.camera.observe({ camera }, latencyMs / 1000)
  }
}
