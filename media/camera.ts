import type { Logger } from '../common/logger.ts'
import { redactCredentials } from '../common/text.ts'
import { percentile } from '../common/stats.ts'
import type { Feeds } from '../runtime/tensors.ts'
import type { Detection } from './detections.ts'
import { textRegions } from './detections.ts'
import { FrameSource } from './frame-source.ts'
import type { FrameSourceOptions } from './frame-source.ts'

/** What runs one model: the runtime, seen from a camera. */
export interface ModelRunner {
  run: (id: string, feeds: Feeds) => Promise<{ outputs: Feeds, ms: number, inputs: Feeds }>
}

export interface CameraResult {
  camera: string
  /** When the frame was decoded (ms since the epoch), and how long until its result (ms). */
  at: number
  latencyMs: number
  detections: Detection[]
}

export interface CameraStats {
  camera: string
  source: string
  model: string
  /** Frames per second decoded, and inferred, over the last few seconds. */
  fpsIn: number
  fpsInferred: number
  /** Frames dropped because the model was still busy with an earlier one (Frigate's "skipped"). */
  skipped: number
  /** Decode to result, p50 over the recent results (ms). */
  latencyMs: number
  /** What the latest result found (text regions, objects). */
  detections: number
  reconnects: number
  lastError: string | null
  /** "software", or the hardware that decodes the source ("cuda", "vaapi"…). */
  decoder: string
}

export interface CameraOptions extends Omit<FrameSourceOptions, 'url'> {
  id: string
  /** The source as shown (never with credentials), and the URL opened: the source with the camera's credentials. */
  source: string
  url?: string
  model: string
  inputName: string
}

const WINDOW_MS = 5_000

/**
 * camera → tensor → model → results, with Frigate's back-pressure: the source (decoding in its own thread)
 * keeps the newest frame while the model is busy and skips the rest; when the model is done, the newest frame
 * comes as a tensor, written into the buffer of the one before. One inference is in flight at a time.
 */
export class CameraPipeline {
  private readonly options: CameraOptions
  private readonly runner: ModelRunner
  private readonly log: Logger
  private readonly onResult: (result: CameraResult) => void
  private readonly source: FrameSource
  private loop: Promise<void> | undefined
  private lastDetections = 0
  private readonly inferred: Array<{ at: number, latencyMs: number }> = []

  constructor (components: { options: CameraOptions, runner: ModelRunner, log: Logger, onResult: (result: CameraResult) => void }) {
    this.options = components.options
    this.runner = components.runner
    this.log = components.log
    this.onResult = components.onResult
    this.source = new FrameSource({ options: { ...this.options, url: this.options.url ?? this.options.source }, log: this.log })
  }

  start (): void {
    this.source.start()
    // A failure outside inference (a result that cannot be handed on) ends this camera's loop, logged, not the agent.
    this.loop = this.infer().catch((err: unknown) => { this.log.error({ camera: this.options.id, err }, 'camera loop failed') })
  }

  async stop (): Promise<void> {
    await this.source.stop()
    await this.loop
  }

  private async infer (): Promise<void> {
    const { id, model, inputName, width, height } = this.options
    let tensor: Float32Array | undefined
    for (let frame = await this.source.next(); frame !== null; frame = await this.source.next(tensor)) {
      let result
      try {
        result = await this.runner.run(model, { [inputName]: { dtype: 'float32', dims: [1, 3, height, width], data: frame.tensor } })
      } catch (err) {
        tensor = undefined // transferred away
        this.log.warn({ camera: id, err: (err as Error).message }, 'inference failed')
        continue
      }
      tensor = result.inputs[inputName]?.data as Float32Array | undefined
      const output = Object.values(result.outputs)[0]
      const detections = output === undefined ? [] : textRegions(output.data as Float32Array, output.dims.at(-1) as number, output.dims.at(-2) as number)
      const latencyMs = Date.now() - frame.at
      this.inferred.push({ at: Date.now(), latencyMs })
      trim(this.inferred, (r) => r.at)
      this.lastDetections = detections.length
      this.onResult({ camera: id, at: frame.at, latencyMs, detections })
    }
  }

  stats (): CameraStats {
    const source = this.source.stats()
    trim(this.inferred, (r) => r.at)
    return {
      camera: this.options.id,
      source: this.options.source,
      model: this.options.model,
      fpsIn: source.fpsIn,
      fpsInferred: Math.round(this.inferred.length / (WINDOW_MS / 1000) * 10) / 10,
      skipped: source.skipped,
      latencyMs: Math.round(percentile(this.inferred.map((r) => r.latencyMs), 50) || 0),
      detections: this.lastDetections,
      reconnects: source.reconnects,
      lastError: source.lastError === null ? null : redactCredentials(source.lastError),
      decoder: source.decoder
    }
  }
}

/** Drops entries older than the window. */
function trim<T> (list: T[], at: (item: T) => number, now = Date.now()): void {
  while (list.length > 0 && at(list[0] as T) < now - WINDOW_MS) list.shift()
}
