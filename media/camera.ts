import type { Logger } from '../agent/logger.ts'
import { percentile } from '../agent/stats.ts'
import type { Feeds } from '../runtime/tensors.ts'
import type { Detection } from './detections.ts'
import { textRegions } from './detections.ts'
import { FrameSource } from './frame-source.ts'
import type { FrameSourceOptions, VideoFrame } from './frame-source.ts'
import { rgbToTensor } from './preprocess.ts'
import type { Normalization } from './preprocess.ts'

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
  /** Frames dropped because the model was still busy with an earlier one (Frigate's "skipped fps"). */
  skipped: number
  /** Decode to result, p50 over the recent results (ms). */
  latencyMs: number
  /** What the latest result found (text regions, objects). */
  detections: number
  reconnects: number
  lastError: string | null
}

export interface CameraOptions extends Omit<FrameSourceOptions, 'url'> {
  id: string
  source: string
  model: string
  inputName: string
  normalization: Normalization
}

const WINDOW_MS = 5_000

/**
 * camera → tensor → model → results, with Frigate's back-pressure: the newest decoded frame waits for the model;
 * a newer one replaces it, and the replaced one is counted as skipped. One inference is in flight at a time, and
 * its input buffer comes back with the result to carry the next frame.
 */
export class CameraPipeline {
  private readonly options: CameraOptions
  private readonly runner: ModelRunner
  private readonly log: Logger
  private readonly onResult: (result: CameraResult) => void
  private readonly source: FrameSource
  private latest: VideoFrame | undefined
  private busy = false
  private tensor: Float32Array | undefined
  private pending: Buffer | undefined
  private skippedFrames = 0
  private lastDetections = 0
  private readonly decoded: number[] = []
  private readonly inferred: Array<{ at: number, latencyMs: number }> = []

  constructor (components: { options: CameraOptions, runner: ModelRunner, log: Logger, onResult: (result: CameraResult) => void }) {
    this.options = components.options
    this.runner = components.runner
    this.log = components.log
    this.onResult = components.onResult
    this.source = new FrameSource({
      options: { ...this.options, url: this.options.source },
      log: this.log,
      onFrame: (frame) => { this.onFrame(frame) }
    })
  }

  start (): void {
    this.source.start()
  }

  async stop (): Promise<void> {
    await this.source.stop()
  }

  private onFrame (frame: VideoFrame): void {
    this.decoded.push(frame.at)
    trim(this.decoded, (at) => at)
    if (this.latest !== undefined) this.skippedFrames++
    // The frame's memory is FFmpeg's until this call returns: keep a copy, in one buffer reused for every frame
    // (a waiting frame that a newer one replaces was skipped anyway).
    if (this.pending?.length !== frame.rgb.length) this.pending = Buffer.allocUnsafe(frame.rgb.length)
    frame.rgb.copy(this.pending)
    this.latest = { ...frame, rgb: this.pending }
    if (!this.busy) void this.infer()
  }

  private async infer (): Promise<void> {
    this.busy = true
    try {
      while (this.latest !== undefined) {
        const frame = this.latest
        this.latest = undefined
        const { width, height } = this.options
        this.tensor = rgbToTensor(frame.rgb, frame.width, frame.height, this.options.normalization, { stride: frame.stride, out: this.tensor })
        let result
        try {
          result = await this.runner.run(this.options.model, { [this.options.inputName]: { dtype: 'float32', dims: [1, 3, height, width], data: this.tensor } })
        } catch (err) {
          this.tensor = undefined // transferred away
          this.log.warn({ camera: this.options.id, err: (err as Error).message }, 'inference failed')
          continue
        }
        this.tensor = result.inputs[this.options.inputName]?.data as Float32Array | undefined
        const output = Object.values(result.outputs)[0]
        const detections = output === undefined ? [] : textRegions(output.data as Float32Array, output.dims.at(-1) as number, output.dims.at(-2) as number)
        const latencyMs = Date.now() - frame.at
        this.inferred.push({ at: Date.now(), latencyMs })
        this.lastDetections = detections.length
        trim(this.inferred, (r) => r.at)
        this.onResult({ camera: this.options.id, at: frame.at, latencyMs, detections })
      }
    } finally {
      this.busy = false
    }
  }

  stats (): CameraStats {
    const now = Date.now()
    trim(this.decoded, (at) => at, now)
    trim(this.inferred, (r) => r.at, now)
    const seconds = WINDOW_MS / 1000
    return {
      camera: this.options.id,
      source: this.options.source,
      model: this.options.model,
      fpsIn: Math.round(this.decoded.length / seconds * 10) / 10,
      fpsInferred: Math.round(this.inferred.length / seconds * 10) / 10,
      skipped: this.skippedFrames,
      latencyMs: Math.round(percentile(this.inferred.map((r) => r.latencyMs), 50) || 0),
      detections: this.lastDetections,
      reconnects: this.source.reconnects,
      lastError: this.source.lastError
    }
  }
}

/** Drops entries older than the window. */
function trim<T> (list: T[], at: (item: T) => number, now = Date.now()): void {
  while (list.length > 0 && at(list[0] as T) < now - WINDOW_MS) list.shift()
}
