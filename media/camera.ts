import type { Logger } from '../common/logger.ts'
import { redactCredentials } from '../common/text.ts'
import { percentile } from '../common/stats.ts'
import type { Feeds } from '../runtime/tensors.ts'
import type { Detection } from './detections.ts'
import type { DetectorPlan } from './detector/plan.ts'
import { FrameSource } from './frame-source.ts'
import type { FrameSourceOptions, Snapshot } from './frame-source.ts'
import type { Box } from './snapshot-graph.ts'

/** What runs one model: the runtime, seen from a camera. */
export interface ModelRunner {
  run: (id: string, feeds: Feeds) => Promise<{ outputs: Feeds, ms: number, inputs: Feeds }>
  /** The camera's first inference times, at its frame's size: the model's latency where it really runs. */
  recordRuns?: (id: string, ms: number[]) => void
}

/** Inferences a camera times before it records its model's latency at the camera's frame size. */
export const MEASURED_RUNS = 20

export interface CameraResult {
  camera: string
  /** When the frame was decoded (ms since the epoch), and how long until its result (ms). */
  at: number
  latencyMs: number
  detections: Detection[]
  /** The frame it was inferred from (absent where results do not come from a camera here: tests, replays). */
  frame?: ResultFrame
}

/** A result's frame: its number in its decode thread, its size, and a JPEG of it while that thread holds it. */
export interface ResultFrame {
  seq: number
  width: number
  height: number
  /**
   * The frame with `boxes` (source pixels) drawn (FrameSource.snapshot): asked while the result is handled, or
   * until the next result, the thread still holds it; later it fails (`gone`).
   */
  snapshot: (boxes: readonly Box[]) => Promise<Snapshot>
}

export interface CameraStats {
  camera: string
  source: string
  model: string
  /** Frames decoded since the camera started; per second decoded, and inferred, over the last few seconds. */
  framesIn: number
  fpsIn: number
  fpsInferred: number
  /** Frames dropped because the model was still busy with an earlier one (Frigate's "skipped"). */
  skipped: number
  /** Decode to result, p50 over the recent results (ms). */
  latencyMs: number
  /** What the latest result found (text regions, objects). */
  detections: number
  /** The decoder that reads the model's outputs (`yolov8`, `ssd`, `rt-detr`, `db-text`…). */
  detector: string
  /** Results whose outputs the decoder could not read (shape or type not the model's declared ones). */
  outputErrors: number
  /** Motion gating: frames in which something moved, and frames not inferred because nothing had. */
  motionFrames: number
  stillFrames: number
  reconnects: number
  lastError: string | null
  /** "software", or the hardware that decodes the source ("cuda", "vaapi"…). */
  decoder: string
}

export interface CameraOptions extends Omit<FrameSourceOptions, 'url' | 'width' | 'height' | 'input'> {
  id: string
  /** The source as shown (never with credentials), and the URL opened: the source with the camera's credentials. */
  source: string
  url?: string
  model: string
  /** What the model takes and how its outputs are read (planDetector). */
  detector: DetectorPlan
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
  private outputErrors = 0
  /** The first inference times (ms), until MEASURED_RUNS are recorded. */
  private readonly firstRuns: number[] = []
  private lastOutputError: string | null = null
  private readonly inferred: Array<{ at: number, latencyMs: number }> = []

  constructor (components: { options: CameraOptions, runner: ModelRunner, log: Logger, onResult: (result: CameraResult) => void }) {
    this.options = components.options
    this.runner = components.runner
    this.log = components.log
    this.onResult = components.onResult
    const { source, url, fps, loop, paced, hwaccel, motion, detector: { input } } = this.options
    // Only what the decode thread needs travels to it (the detector's functions cannot).
    this.source = new FrameSource({
      options: { source, url: url ?? source, fps, loop, paced, hwaccel, motion, width: input.width, height: input.height, input: input.format },
      log: this.log
    })
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
    const { id, model, detector } = this.options
    const { name, dims, format } = detector.input
    let tensor: Float32Array | Uint8Array | undefined
    for (let frame = await this.source.next(tensor); frame !== null; frame = await this.source.next(tensor)) {
      let result
      try {
        result = await this.runner.run(model, { ...detector.extraFeeds(), [name]: { dtype: format.dtype, dims, data: frame.tensor } })
      } catch (err) {
        tensor = undefined // transferred away
        this.log.warn({ camera: id, err: (err as Error).message }, 'inference failed')
        continue
      }
      tensor = result.inputs[name]?.data as Float32Array | Uint8Array | undefined
      if (this.firstRuns.length < MEASURED_RUNS) {
        this.firstRuns.push(result.ms)
        if (this.firstRuns.length === MEASURED_RUNS) this.runner.recordRuns?.(model, this.firstRuns)
      }
      let detections: Detection[]
      try {
        detections = detector.decode(result.outputs, frame)
        this.lastOutputError = null
      } catch (err) {
        // A model whose outputs are not what it declared: counted and said once per kind of fault, the camera goes on.
        this.outputErrors++
        const message = (err as Error).message
        if (message !== this.lastOutputError) this.log.warn({ camera: id, err: message }, 'the model\'s outputs could not be read')
        this.lastOutputError = message
        continue
      }
      const latencyMs = Date.now() - frame.at
      this.inferred.push({ at: Date.now(), latencyMs })
      trim(this.inferred, (r) => r.at)
      this.lastDetections = detections.length
      const { seq, sourceWidth: width, sourceHeight: height } = frame
      // Called before the next frame is asked for: a snapshot asked for now reaches the decode thread first.
      this.onResult({ camera: id, at: frame.at, latencyMs, detections, frame: { seq, width, height, snapshot: async (boxes) => await this.source.snapshot(seq, boxes) } })
    }
  }

  stats (): CameraStats {
    const source = this.source.stats()
    trim(this.inferred, (r) => r.at)
    return {
      camera: this.options.id,
      source: this.options.source,
      model: this.options.model,
      framesIn: source.framesIn,
      fpsIn: source.fpsIn,
      fpsInferred: Math.round(this.inferred.length / (WINDOW_MS / 1000) * 10) / 10,
      skipped: source.skipped,
      latencyMs: Math.round(percentile(this.inferred.map((r) => r.latencyMs), 50) || 0),
      detections: this.lastDetections,
      detector: this.options.detector.variant,
      outputErrors: this.outputErrors,
      motionFrames: source.motionFrames,
      stillFrames: source.stillFrames,
      reconnects: source.reconnects,
      lastError: source.lastError !== null ? redactCredentials(source.lastError) : this.lastOutputError,
      decoder: source.decoder
    }
  }
}

/** Drops entries older than the window. */
function trim<T> (list: T[], at: (item: T) => number, now = Date.now()): void {
  while (list.length > 0 && at(list[0] as T) < now - WINDOW_MS) list.shift()
}
