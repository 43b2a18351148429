import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import type { Logger } from '../common/logger.ts'
import { siblingModule } from '../common/modules.ts'
import { NoodleError } from '../common/errors.ts'
import { redactCredentials } from '../common/text.ts'
import type { InputFormat } from './preprocess.ts'
import { MAX_SNAPSHOT_BOXES } from './snapshot-graph.ts'
import type { Box } from './snapshot-graph.ts'

/** Network sources by scheme, with the FFmpeg protocols each may use underneath. */
const NETWORK_PROTOCOLS: ReadonlyArray<readonly [string, string]> = [
  ['rtsps', 'rtsp,rtsps,rtp,srtp,udp,tcp,tls'],
  ['rtsp', 'rtsp,rtsps,rtp,srtp,udp,tcp,tls'],
  ['https', 'http,https,tls,tcp,crypto,httpproxy'],
  ['http', 'http,https,tls,tcp,crypto,httpproxy'],
  ['rtmps', 'rtmp,rtmps,tcp,tls'],
  ['rtmp', 'rtmp,rtmps,tcp,tls'],
  ['srt', 'srt,udp']
]

/**
 * Where frames come from:
 * - `lavfi:<graph>`: an FFmpeg test source, e.g. `lavfi:testsrc=size=640x480:rate=10`
 * - `/dev/videoN`: a V4L2 camera
 * - `rtsp(s)://…`, `http(s)://…`, `rtmp(s)://…`, `srt://…`: a network stream (RTSP over TCP: UDP loses packets on
 *   busy Wi-Fi)
 * - anything else: a file
 */
export function demuxerInput (url: string): { input: string, format?: string, options?: Record<string, string>, live: boolean } {
  if (url.startsWith('lavfi:')) return { input: url.slice('lavfi:'.length), format: 'lavfi', live: false }
  if (url.startsWith('/dev/video')) return { input: url, format: 'video4linux2', live: true }
  const network = NETWORK_PROTOCOLS.find(([scheme]) => url.startsWith(`${scheme}://`))
  if (network !== undefined) {
    // What the stream itself names (an HLS playlist's segments, an SDP's transports) may use only the protocols
    // of its own kind: never file:, pipe: or others that read this box.
    const options: Record<string, string> = { protocol_whitelist: network[1] }
    if (network[0].startsWith('rtsp')) options.rtsp_transport = 'tcp'
    return { input: url, options, live: true }
  }
  return { input: url, live: false }
}

export interface FrameSourceOptions {
  /** The URL opened: it may carry the camera's credentials, so it is never logged. */
  url: string
  /** The source as logged and shown (never with credentials); the URL itself where absent (a test, a bench). */
  source?: string
  width: number
  height: number
  fps: number
  /** Start a file (or test source) again when it ends. */
  loop: boolean
  /** Deliver a file's frames as a camera would, each when its timestamp says (at most `fps` a second); off, as fast as they decode (benchmarks). */
  paced: boolean
  /** How a frame becomes the model's input tensor. */
  input: InputFormat
  /** "auto": decode on the box's video hardware where FFmpeg finds some (CUDA, VAAPI, QSV…), else in software. */
  hwaccel: 'auto' | 'none'
  /** Motion gating (the camera's `motion`): a frame is given only once something moved, or every refreshS. */
  motion?: { enabled: boolean, refreshS: number }
}

/** A frame as the model takes it (its input's layout, type and scale), at the model's size. */
export interface TensorFrame {
  tensor: Float32Array | Uint8Array
  /** The frame's size as decoded, before it was letterboxed to the model's. */
  sourceWidth: number
  sourceHeight: number
  /** When it was decoded (ms since the epoch), and its number in this decode thread (what snapshot() names it by). */
  at: number
  seq: number
}

/** A frame the camera had, as a JPEG with boxes drawn (snapshot()). */
export interface Snapshot {
  jpeg: Uint8Array
  /** Its size (the source's, scaled to fit 1280×1280, aspect kept), and how long the decode thread took to make it. */
  width: number
  height: number
  ms: number
}

/**
 * A snapshot could not be made: the frame is no longer held (a newer result came, the decoder restarted, the
 * camera stopped), another is being made, or FFmpeg failed. The camera goes on either way.
 */
export class SnapshotFailedError extends NoodleError {
  readonly reason: 'gone' | 'busy' | 'failed'

  constructor (reason: 'gone' | 'busy' | 'failed', message: string) {
    super('ERR_SNAPSHOT_FAILED', message)
    this.reason = reason
  }
}

export interface SourceStats {
  framesIn: number
  /** Frames decoded per second over the last few seconds. */
  fpsIn: number
  /** Frames replaced by a newer one before anyone asked for them (Frigate's "skipped fps"). */
  skipped: number
  reconnects: number
  lastError: string | null
  /** From start() to the first frame (ms): loading FFmpeg in the decode thread, opening the source. */
  firstFrameMs: number | null
  /** "software", or the hardware that decodes the source ("cuda", "vaapi"…). */
  decoder: string
  /** Frames in which something moved (motion gating on), and frames held back because nothing had. */
  motionFrames: number
  stillFrames: number
}

/** What the decode worker (decode-worker.ts) and its FrameSource say to each other. */
export type ToDecoder =
  | { type: 'want', into: Float32Array | Uint8Array | null }
  | { type: 'stop' }
  /** A JPEG of a frame delivered (one of the last two), boxes drawn: answered by a `snapshot` with the same id. */
  | { type: 'snapshot', id: number, seq: number, boxes: Box[] }
export type FromDecoder =
  | { type: 'frame', tensor: Float32Array | Uint8Array, at: number, seq: number, sourceWidth: number, sourceHeight: number }
  | { type: 'snapshot', id: number, jpeg: Uint8Array, width: number, height: number, ms: number }
  | { type: 'snapshot', id: number, error: string, gone: boolean }
  | { type: 'stats', framesIn: number, skipped: number, reconnects: number, lastError: string | null, firstFrameAt: number | null, decoder: string, motionFrames: number, stillFrames: number }
  | { type: 'log', level: 'warn' | 'debug', msg: string, fields: Record<string, unknown> }

const WORKER_URL = siblingModule(import.meta.url, 'decode-worker')
const WINDOW_MS = 5_000
/** A worker that died (a bug, or FFmpeg aborting) is started again after this long. */
const RESTART_MS = 1_000
/** How long a stopping worker may take to close its source (a network read in progress) before it is ended. */
const STOP_TIMEOUT_MS = 2_000
/** A snapshot takes milliseconds (bench: 640×480 and 1280×720); one not answered in this long has failed. */
const SNAPSHOT_TIMEOUT_MS = 5_000

/**
 * A video source decoded by node-av (FFmpeg) in a worker thread, so that neither decoding, scaling nor the
 * tensor pass ever runs on the agent's event loop. FFmpeg's filter graph brings each frame to the model's size;
 * the worker keeps the newest one and turns it into a tensor only when asked (`next()`): a frame nobody asked
 * for before a newer one arrived is skipped, never queued. A lost stream is reopened with backoff (in the
 * worker). The synchronous node-av calls in the worker go at the FFmpeg CLI's speed; the asynchronous ones,
 * one thread-pool round trip each, at half of it (bench/media).
 */
export class FrameSource {
  private readonly options: FrameSourceOptions
  /** The source as logs show it. */
  private readonly shown: string
  private readonly log: Logger
  private worker: Worker | undefined
  private exited: Promise<void> = Promise.resolve()
  private restart: NodeJS.Timeout | undefined
  private running = false
  private waiting: { resolve: (frame: TensorFrame | null) => void, into: Float32Array | Uint8Array | null } | undefined
  private latest: Omit<SourceStats, 'fpsIn' | 'firstFrameMs' | 'decoder'> = { framesIn: 0, skipped: 0, reconnects: 0, lastError: null, motionFrames: 0, stillFrames: 0 }
  private startedAt = 0
  private firstFrameAt: number | null = null
  private decoder = 'software'
  /** Stats from earlier workers of this source (one died and was started again). */
  private base = { framesIn: 0, skipped: 0, reconnects: 0, motionFrames: 0, stillFrames: 0 }
  private readonly samples: Array<{ at: number, framesIn: number }> = []
  private done: (() => void) | undefined
  private readonly finished: Promise<void>
  /** The last two frames given, and the thread that holds them (a restarted one numbers its frames from 0 again). */
  private readonly recent: Array<{ seq: number, worker: Worker }> = []
  /** The snapshot being made: one at a time. */
  private snapshotting: { id: number, resolve: (s: Snapshot) => void, reject: (err: Error) => void, timer: NodeJS.Timeout } | undefined
  private snapshotIds = 0

  constructor (components: { options: FrameSourceOptions, log: Logger }) {
    this.options = components.options
    this.shown = redactCredentials(components.options.source ?? components.options.url)
    this.log = components.log
    this.finished = new Promise((resolve) => { this.done = resolve })
  }

  start (): void {
    this.running = true
    this.startedAt = Date.now()
    this.spawn()
  }

  /** Resolves when the source has ended: a file that does not loop, played to its end (or stop()). */
  async ended (): Promise<void> {
    await this.finished
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.restart)
    const worker = this.worker
    if (worker !== undefined) {
      worker.postMessage({ type: 'stop' } satisfies ToDecoder)
      const timer = setTimeout(() => { void worker.terminate() }, STOP_TIMEOUT_MS)
      await this.exited
      clearTimeout(timer)
    }
    this.finish()
  }

  /**
   * A JPEG of a frame next() gave (by its seq), with `boxes` (source pixels) drawn, made in the decode thread. The
   * thread holds the last two frames it gave, so a result's frame can be had until the result after it: ask
   * before the next frame is asked for (the request reaches the thread first). One at a time: another asked for
   * meanwhile is refused (`busy`), never queued.
   */
  async snapshot (seq: number, boxes: readonly Box[]): Promise<Snapshot> {
    const worker = this.worker
    if (this.snapshotting !== undefined) throw new SnapshotFailedError('busy', 'a snapshot of this camera is being made')
    if (worker === undefined || !this.recent.some((r) => r.seq === seq && r.worker === worker)) throw new SnapshotFailedError('gone', `frame ${seq} is no longer held`)
    const id = ++this.snapshotIds
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.settleSnapshot(id, new SnapshotFailedError('failed', `no snapshot within ${SNAPSHOT_TIMEOUT_MS} ms`)) }, SNAPSHOT_TIMEOUT_MS)
      this.snapshotting = { id, resolve, reject, timer }
      worker.postMessage({ type: 'snapshot', id, seq, boxes: boxes.slice(0, MAX_SNAPSHOT_BOXES).map((b) => [b[0], b[1], b[2], b[3]]) } satisfies ToDecoder)
    })
  }

  private settleSnapshot (id: number, outcome: Snapshot | Error): void {
    const pending = this.snapshotting
    if (pending?.id !== id) return // answered after its timeout
    this.snapshotting = undefined
    clearTimeout(pending.timer)
    if (outcome instanceof Error) pending.reject(outcome)
    else pending.resolve(outcome)
  }

  /**
   * The newest frame as a tensor: the one waiting now, or the next one decoded; null once the source has
   * ended or stopped. `into`, a tensor from an earlier frame, is filled again (it moves to the worker and back).
   * One call at a time. While a decoder that died is being started again, the call waits for the new one.
   */
  async next (into?: Float32Array | Uint8Array): Promise<TensorFrame | null> {
    if (!this.running) return null
    return await new Promise((resolve) => {
      this.waiting = { resolve, into: into ?? null }
      this.ask()
    })
  }

  stats (): SourceStats {
    const now = Date.now()
    this.trim(now)
    const framesIn = this.base.framesIn + this.latest.framesIn
    const oldest = this.samples[0]
    return {
      framesIn,
      fpsIn: Math.round((framesIn - (oldest?.framesIn ?? framesIn)) / (WINDOW_MS / 1000) * 10) / 10,
      skipped: this.base.skipped + this.latest.skipped,
      reconnects: this.base.reconnects + this.latest.reconnects,
      lastError: this.latest.lastError,
      firstFrameMs: this.firstFrameAt === null ? null : this.firstFrameAt - this.startedAt,
      decoder: this.decoder,
      motionFrames: this.base.motionFrames + this.latest.motionFrames,
      stillFrames: this.base.stillFrames + this.latest.stillFrames
    }
  }

  private spawn (): void {
    const worker = new Worker(WORKER_URL, { workerData: this.options })
    this.worker = worker
    worker.on('message', (message: FromDecoder) => { this.onMessage(message) })
    worker.on('error', (err) => {
      this.latest.lastError = err.message
      this.log.error({ source: this.shown, err: redactCredentials(err.message) }, 'video decoder failed')
    })
    this.exited = once(worker, 'exit').then(([code]) => { this.onExit(worker, code as number) })
    if (this.waiting !== undefined) this.ask()
  }

  private ask (): void {
    const into = this.waiting?.into ?? null
    if (this.waiting !== undefined) this.waiting.into = null // moved to the worker
    this.worker?.postMessage({ type: 'want', into } satisfies ToDecoder, into === null ? [] : [into.buffer as ArrayBuffer])
  }

  private onMessage (message: FromDecoder): void {
    if (message.type === 'frame') {
      if (this.worker !== undefined) this.recent.push({ seq: message.seq, worker: this.worker })
      if (this.recent.length > 2) this.recent.shift()
      const waiting = this.waiting
      this.waiting = undefined
      waiting?.resolve({ tensor: message.tensor, at: message.at, seq: message.seq, sourceWidth: message.sourceWidth, sourceHeight: message.sourceHeight })
    } else if (message.type === 'snapshot') {
      this.settleSnapshot(message.id, 'error' in message
        ? new SnapshotFailedError(message.gone ? 'gone' : 'failed', message.error)
        : { jpeg: message.jpeg, width: message.width, height: message.height, ms: message.ms })
    } else if (message.type === 'stats') {
      this.latest = { framesIn: message.framesIn, skipped: message.skipped, reconnects: message.reconnects, lastError: message.lastError, motionFrames: message.motionFrames, stillFrames: message.stillFrames }
      this.firstFrameAt ??= message.firstFrameAt
      this.decoder = message.decoder
      const at = Date.now()
      this.samples.push({ at, framesIn: this.base.framesIn + message.framesIn })
      this.trim(at)
    } else {
      // The URL opened may carry the camera's credentials: the log never does (FFmpeg's errors quote the URL).
      const fields = Object.fromEntries(Object.entries(message.fields).map(([k, v]) => [k, typeof v === 'string' ? redactCredentials(v) : v]))
      this.log[message.level]({ ...fields, source: this.shown }, redactCredentials(message.msg))
    }
  }

  private onExit (worker: Worker, code: number): void {
    if (this.worker !== worker) return
    this.worker = undefined
    if (this.snapshotting !== undefined) this.settleSnapshot(this.snapshotting.id, new SnapshotFailedError('gone', 'the decoder stopped'))
    // A clean exit: the source ended, or we stopped it. Anything else is started again.
    if (!this.running || code === 0) {
      this.finish()
      return
    }
    this.base = {
      framesIn: this.base.framesIn + this.latest.framesIn,
      skipped: this.base.skipped + this.latest.skipped,
      reconnects: this.base.reconnects + this.latest.reconnects + 1,
      motionFrames: this.base.motionFrames + this.latest.motionFrames,
      stillFrames: this.base.stillFrames + this.latest.stillFrames
    }
    this.latest = { framesIn: 0, skipped: 0, reconnects: 0, lastError: this.latest.lastError ?? `the decoder exited with code ${code}`, motionFrames: 0, stillFrames: 0 }
    this.restart = setTimeout(() => { this.respawn() }, RESTART_MS)
  }

  /** From a timer: a thread that cannot be started now (out of memory) is tried again later, never thrown. */
  private respawn (): void {
    if (!this.running) return
    try {
      this.spawn()
    } catch (err) {
      this.latest.lastError = (err as Error).message
      this.log.error({ source: this.shown, err: redactCredentials((err as Error).message), retryInMs: RESTART_MS }, 'video decoder could not be started')
      this.restart = setTimeout(() => { this.respawn() }, RESTART_MS)
    }
  }

  private finish (): void {
    this.running = false
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.resolve(null)
    this.done?.()
  }

  /** Keeps the samples of the last window, and one older: frames decoded in the window count from it. */
  private trim (now: number): void {
    while (this.samples.length > 1 && (this.samples[1] as { at: number }).at <= now - WINDOW_MS) this.samples.shift()
  }
}
