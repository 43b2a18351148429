/**
 * The decode thread of one video source (see FrameSource): demux, decode and FFmpeg's filter graph through
 * node-av's synchronous calls, and the one pass from RGB24 to the model's input when the camera asks for a
 * frame. Everything here may block: it is this thread's only job.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { Decoder, Demuxer, FilterAPI, HardwareContext } from 'node-av/api'
import { AV_LOG_ERROR, AV_LOG_QUIET, AV_PIX_FMT_NV12 } from 'node-av/constants'
import { Log } from 'node-av/lib'
import type { Frame, Packet } from 'node-av/lib'
import { demuxerInput } from './frame-source.ts'
import type { FrameSourceOptions, FromDecoder, ToDecoder } from './frame-source.ts'
import { MotionDetector } from './motion.ts'
import { FrameRate, frameToTensor, shapeGraph } from './preprocess.ts'
import { isBox } from './snapshot-graph.ts'
import { encodeSnapshot } from './snapshot-jpeg.ts'

const BACKOFF_MIN_MS = 1_000
const BACKOFF_MAX_MS = 30_000
const STATS_EVERY_MS = 500
/** Frames go to the camera for this long after the last motion (longer than an event takes to end: 2 s). */
const MOTION_HOLD_MS = 2_500

class DecodeLoop {
  private readonly options: FrameSourceOptions
  private readonly port: MessagePort
  private running = true
  private wake: (() => void) | undefined
  /**
   * The newest filtered frame, not yet asked for, and the source frame it was made from (FFmpeg's memory, a
   * reference, not a copy: freed when replaced or used; none when FFmpeg could not make the reference).
   */
  private latest: { frame: Frame, source: Frame | undefined, at: number, seq: number, sourceWidth: number, sourceHeight: number, grid?: Uint8Array } | undefined
  /**
   * The source frames of the last two frames given, for snapshots: a result's frame is held until the one after it.
   * With the one waiting (latest), at most three source frames a camera (docs/cameras.md#snapshots says what that costs).
   */
  private readonly given: Array<{ seq: number, source: Frame | undefined }> = []
  /** Frames numbered over this thread's life (not per open): a snapshot names its frame by it. */
  private seq = 0
  /** A frame was asked for, to be written into this tensor (null: a new one). */
  private wanted: { into: Float32Array | Uint8Array | null } | undefined
  private framesIn = 0
  private skipped = 0
  private reconnects = 0
  private lastError: string | null = null
  private statsAt = 0
  private firstFrameAt: number | null = null
  /** "software", or the hardware decoding the source ("cuda", "vaapi"…). */
  private decoder = 'software'
  /** Hardware decoding failed on this source: software from now on. */
  private hardwareFailed = false
  /** Motion gating: a frame is given once something moved since the last one given, or refreshS after it. */
  private readonly motion: MotionDetector | undefined
  /** When a frame was last given to the camera, and when something last moved (0: never). */
  private deliveredAt = 0
  private movedAt = 0
  private gateTimer: NodeJS.Timeout | undefined
  private motionFrames = 0
  private stillFrames = 0

  constructor (options: FrameSourceOptions, port: MessagePort) {
    this.options = options
    this.port = port
    this.motion = options.motion?.enabled === true ? new MotionDetector() : undefined
  }

  /**
   * Whether the frame waiting may go to the camera now: something moved since the last frame it had, or did less
   * than MOTION_HOLD_MS ago (an object that walks in and stops is seen in the frames after, as the tracker needs),
   * or refreshS has passed.
   */
  private gateOpen (): boolean {
    if (this.motion === undefined || this.movedAt > this.deliveredAt) return true
    const now = Date.now()
    return now - this.movedAt < MOTION_HOLD_MS || now - this.deliveredAt >= (this.options.motion?.refreshS ?? 0) * 1000
  }

  private take (message: ToDecoder): void {
    if (message.type === 'stop') {
      this.running = false
      this.wake?.()
    } else if (message.type === 'snapshot') {
      this.snapshot(message)
    } else {
      this.wanted = { into: message.into }
      if (this.latest !== undefined) {
        if (this.gateOpen()) this.deliver()
        else this.recheckGate()
      }
    }
  }

  /** Takes the main thread's requests and decodes until told to stop (or a file source ends); closes the port. */
  async run (): Promise<void> {
    this.port.on('message', (message: ToDecoder) => { this.take(message) })
    let backoff = BACKOFF_MIN_MS
    while (this.running) {
      const started = Date.now()
      try {
        await this.decode()
        this.lastError = null
        if (!this.options.loop && !demuxerInput(this.options.url).live) break
      } catch (err) {
        this.lastError = (err as Error).message
        this.post({ type: 'log', level: 'warn', msg: 'video source failed', fields: { err: this.lastError, retryInMs: backoff } })
      }
      this.sendStats()
      if (!this.running) break
      // A source that ran a while before it ended starts again at once; one that fails at once backs off.
      if (Date.now() - started > BACKOFF_MAX_MS) backoff = BACKOFF_MIN_MS
      await this.sleep(this.lastError === null ? 0 : backoff)
      if (this.lastError !== null) backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
      this.reconnects++
    }
    clearTimeout(this.gateTimer)
    this.latest?.frame.free()
    this.latest?.source?.free()
    this.latest = undefined
    for (const g of this.given.splice(0)) g.source?.free()
    this.sendStats()
    this.port.close()
  }

  private async decode (): Promise<void> {
    const { input, format, options, live } = demuxerInput(this.options.url)
    await using demuxer = await Demuxer.open(input, { format, options } as Parameters<typeof Demuxer.open>[1])
    const stream = demuxer.video()
    if (stream === undefined) throw new Error('the source has no video stream')
    using decoder = this.openDecoder(stream)
    // The frame rate first, by the frames' timestamps (no graph of its own): a frame it keeps is the source frame a
    // snapshot draws on (kept by reference), then scaled and letterboxed to the model's input.
    const rate = new FrameRate(this.options.fps)
    using filter = FilterAPI.create(shapeGraph(this.options))
    const pace = this.options.paced && !live
    // A live stream is read asynchronously, so that stop() is not stuck behind a network read; a file or a test
    // source synchronously, which is twice as fast.
    const packets = live ? demuxer.packets(stream.index) : demuxer.packetsSync(stream.index)
    const framesBefore = this.framesIn
    try {
      await this.pump(packets, decoder, rate, filter, pace)
    } catch (err) {
      // A hardware decoder that cannot decode this stream (a codec or profile it lacks) fails before any frame.
      if (this.decoder !== 'software' && this.framesIn === framesBefore) {
        this.hardwareFailed = true
        this.post({ type: 'log', level: 'warn', msg: 'hardware decoding failed: decoding in software', fields: { hardware: this.decoder, err: (err as Error).message } })
      }
      throw err
    }
  }

  /** Hardware decoding where the box has it (frames come back to memory as NV12 for the filter graph), else software. */
  private openDecoder (stream: NonNullable<ReturnType<Demuxer['video']>>): Decoder {
    this.decoder = 'software'
    if (this.options.hwaccel === 'none' || this.hardwareFailed) return Decoder.createSync(stream)
    // Probing tries every kind of hardware FFmpeg knows, and FFmpeg says so on stderr for each one missing.
    Log.setLevel(AV_LOG_QUIET)
    const hardware = HardwareContext.auto()
    Log.setLevel(AV_LOG_ERROR)
    if (hardware === null) return Decoder.createSync(stream)
    try {
      const decoder = Decoder.createSync(stream, { hardware, rescale: { pixelFormat: AV_PIX_FMT_NV12 } })
      this.decoder = hardware.deviceTypeName
      return decoder
    } catch (err) {
      this.hardwareFailed = true
      this.post({ type: 'log', level: 'warn', msg: 'hardware decoder unavailable: decoding in software', fields: { hardware: hardware.deviceTypeName, err: (err as Error).message } })
      return Decoder.createSync(stream)
    }
  }

  private async pump (packets: AsyncIterable<Packet | null> | Iterable<Packet | null>, decoder: Decoder, rate: FrameRate, filter: FilterAPI,
    pace: boolean): Promise<void> {
    for await (const packet of packets) {
      decoder.decodeSync(packet)
      packet?.free()
      for (let frame = decoder.receiveSync(); frame != null; frame = decoder.receiveSync()) {
        // Freed however this ends (a graph that throws, stop): what is kept of it is a reference of its own.
        try {
          if (!rate.keep(frame.bestEffortTimestamp, frame.timeBase)) continue
          filter.processSync(frame)
          for (let out = filter.receiveSync(); out != null; out = filter.receiveSync()) {
            // A file (or a test source) played as a camera would: each frame when its timestamp says.
            if (pace) await this.sleep(rate.due - performance.now())
            // The source frame for snapshots, a reference; none when FFmpeg could not make one (null: no memory),
            // and then no snapshot of this frame, rather than a reference to a frame freed below.
            this.offer(out, this.seq++, frame, frame.clone() ?? undefined)
            // Between frames, what the camera said (a frame wanted, a snapshot, stop): polled, as this loop does not yield.
            for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) this.take(m.message as ToDecoder)
            if (!this.running) return
          }
        } finally {
          frame.free()
        }
      }
      if (packet === null) return
    }
  }

  /**
   * A new frame replaces the one waiting: skipped when the camera was busy, still when it was held back because
   * nothing moved. It goes out at once if one was asked for and the motion gate is open.
   */
  private offer (frame: Frame, seq: number, size: { width: number, height: number }, source: Frame | undefined): void {
    this.framesIn++
    this.firstFrameAt ??= Date.now()
    if (this.latest !== undefined) {
      this.latest.frame.free()
      this.latest.source?.free()
      if (this.wanted !== undefined) this.stillFrames++
      else this.skipped++
    }
    const grid = this.motion?.grid((frame.data as Buffer[])[0] as Buffer, this.options.width, this.options.height, frame.linesize[0])
    if (grid !== undefined && this.motion?.moved(grid) === true) {
      this.motionFrames++
      this.movedAt = Date.now()
    }
    // The size before the letterbox, which boxes are mapped back to.
    this.latest = { frame, source, at: Date.now(), seq, sourceWidth: size.width, sourceHeight: size.height, grid }
    if (this.wanted !== undefined) {
      if (this.gateOpen()) this.deliver()
      else this.recheckGate()
    }
    if (Date.now() - this.statsAt >= STATS_EVERY_MS) this.sendStats()
  }

  /**
   * A frame is wanted and waits behind a closed gate (nothing moved, and the hold after the last motion is over):
   * it goes when refreshS comes, even if no newer frame comes to open the gate (a source that stalls or reconnects).
   */
  private recheckGate (): void {
    clearTimeout(this.gateTimer)
    const refreshAt = this.deliveredAt + (this.options.motion?.refreshS ?? 0) * 1000
    this.gateTimer = setTimeout(() => {
      if (this.wanted !== undefined && this.latest !== undefined && this.gateOpen()) this.deliver()
    }, Math.max(0, refreshAt - Date.now()))
  }

  private deliver (): void {
    clearTimeout(this.gateTimer)
    const { frame, source, at, seq, sourceWidth, sourceHeight, grid } = this.latest as NonNullable<DecodeLoop['latest']>
    if (grid !== undefined) this.motion?.given(grid)
    this.given.push({ seq, source })
    if (this.given.length > 2) this.given.shift()?.source?.free()
    const into = (this.wanted as NonNullable<DecodeLoop['wanted']>).into
    this.latest = undefined
    this.wanted = undefined
    this.deliveredAt = Date.now()
    const { width, height, input } = this.options
    const rgb = (frame.data as Buffer[])[0] as Buffer
    const tensor = frameToTensor(rgb, width, height, input, { stride: frame.linesize[0] ?? width * 3, out: into ?? undefined })
    frame.free()
    this.post({ type: 'frame', tensor, at, seq, sourceWidth, sourceHeight }, [tensor.buffer as ArrayBuffer])
  }

  /**
   * A JPEG of a frame given, boxes drawn (snapshot-jpeg.ts): milliseconds of this thread, asked for at most once
   * at a time per camera and about once a second (CameraSnapshots), so decoding waits no longer than that.
   */
  private snapshot ({ id, seq, boxes }: { id: number, seq: number, boxes: unknown }): void {
    const held = this.given.find((g) => g.seq === seq)
    if (held === undefined) {
      this.post({ type: 'snapshot', id, error: `frame ${seq} is no longer held`, gone: true })
      return
    }
    if (held.source === undefined) {
      this.post({ type: 'snapshot', id, error: `frame ${seq} could not be kept (FFmpeg made no reference to it)`, gone: true })
      return
    }
    try {
      const started = performance.now()
      const { jpeg, width, height } = encodeSnapshot(held.source, Array.isArray(boxes) ? boxes.filter(isBox) : [])
      // Its own buffer, moved to the main thread rather than copied (node-av's may share one).
      const bytes = new Uint8Array(jpeg)
      this.post({ type: 'snapshot', id, jpeg: bytes, width, height, ms: performance.now() - started }, [bytes.buffer])
    } catch (err) {
      this.post({ type: 'snapshot', id, error: (err as Error).message, gone: false })
    }
  }

  private sendStats (): void {
    this.statsAt = Date.now()
    this.post({ type: 'stats', framesIn: this.framesIn, skipped: this.skipped, reconnects: this.reconnects, lastError: this.lastError, firstFrameAt: this.firstFrameAt, decoder: this.decoder, motionFrames: this.motionFrames, stillFrames: this.stillFrames })
  }

  private post (message: FromDecoder, transfer: ArrayBuffer[] = []): void {
    this.port.postMessage(message, transfer)
  }

  private async sleep (ms: number): Promise<void> {
    if (ms <= 0 || !this.running) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => { clearTimeout(timer); resolve() }
    })
  }
}

await new DecodeLoop(workerData as FrameSourceOptions, parentPort as MessagePort).run()
