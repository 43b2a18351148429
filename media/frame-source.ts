import { Decoder, Demuxer, FilterAPI } from 'node-av/api'
import type { Logger } from '../agent/logger.ts'
import { filterGraph } from './preprocess.ts'

/** A decoded frame at the model's size, packed RGB24. */
export interface VideoFrame {
  /** FFmpeg's frame memory: valid only during the `onFrame` call. Copy what you keep. */
  rgb: Buffer
  width: number
  height: number
  /** Bytes per row (FFmpeg may pad rows). */
  stride: number
  /** When it was decoded (ms since the epoch), and its number since the source opened. */
  at: number
  seq: number
}

/**
 * Where frames come from:
 * - `lavfi:<graph>`: an FFmpeg test source, e.g. `lavfi:testsrc=size=640x480:rate=10`
 * - `/dev/videoN`: a V4L2 camera
 * - `rtsp://…`, `http(s)://…`: a network stream (RTSP over TCP: UDP loses packets on busy Wi-Fi)
 * - anything else: a file
 */
export function demuxerInput (url: string): { input: string, format?: string, options?: Record<string, string>, live: boolean } {
  if (url.startsWith('lavfi:')) return { input: url.slice('lavfi:'.length), format: 'lavfi', live: false }
  if (url.startsWith('/dev/video')) return { input: url, format: 'video4linux2', live: true }
  if (url.startsWith('rtsp://') || url.startsWith('rtsps://')) return { input: url, options: { rtsp_transport: 'tcp' }, live: true }
  if (/^https?:\/\//.test(url)) return { input: url, live: true }
  return { input: url, live: false }
}

export interface FrameSourceOptions {
  url: string
  width: number
  height: number
  fps: number
  /** Start a file (or test source) again when it ends. */
  loop: boolean
  /** Deliver a file's frames at `fps` as a camera would; off, as fast as they decode (benchmarks). */
  paced: boolean
}

const BACKOFF_MIN_MS = 1_000
const SETTLE_MS = 100
const BACKOFF_MAX_MS = 30_000

/**
 * Decodes a video source through node-av (FFmpeg) and hands each frame, scaled and letterboxed to the model's
 * size in FFmpeg's filter graph, to `onFrame`. It never waits for the consumer: keeping up is the consumer's
 * business (it keeps the latest frame and counts the rest as skipped). A lost stream is reopened with backoff.
 */
export class FrameSource {
  private readonly options: FrameSourceOptions
  private readonly log: Logger
  private readonly onFrame: (frame: VideoFrame) => void
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  framesIn = 0
  reconnects = 0
  lastError: string | null = null

  constructor (components: { options: FrameSourceOptions, log: Logger, onFrame: (frame: VideoFrame) => void }) {
    this.options = components.options
    this.log = components.log
    this.onFrame = components.onFrame
  }

  start (): void {
    this.running = true
    this.loop = this.run()
  }

  /** Resolves when the source has ended: a file that does not loop, played to its end (or stop()). */
  async ended (): Promise<void> {
    await this.loop
  }

  async stop (): Promise<void> {
    this.running = false
    this.wake?.()
    await this.loop
    // node-av's demux thread may still finish a read after the demuxer closed; if the process exits first,
    // the addon aborts it ("terminate called after throwing Napi::Error"). Give it a moment to wind down.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  }

  private async run (): Promise<void> {
    let backoff = BACKOFF_MIN_MS
    while (this.running) {
      const started = Date.now()
      try {
        await this.decode()
        this.lastError = null
        if (!this.options.loop && !demuxerInput(this.options.url).live) return
      } catch (err) {
        this.lastError = (err as Error).message
        this.log.warn({ source: this.options.url, err: this.lastError, retryInMs: backoff }, 'video source failed')
      }
      if (!this.running) return
      // A source that ran a while before it ended starts again at once; one that fails at once backs off.
      if (Date.now() - started > BACKOFF_MAX_MS) backoff = BACKOFF_MIN_MS
      await this.sleep(this.lastError === null ? 0 : backoff)
      if (this.lastError !== null) backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
      this.reconnects++
    }
  }

  private async decode (): Promise<void> {
    const { input, format, options, live } = demuxerInput(this.options.url)
    await using demuxer = await Demuxer.open(input, { format, options } as Parameters<typeof Demuxer.open>[1])
    const stream = demuxer.video()
    if (stream === undefined) throw new Error('the source has no video stream')
    using decoder = await Decoder.create(stream)
    using filter = FilterAPI.create(filterGraph(this.options))
    const pace = this.options.paced && !live
    const interval = 1000 / this.options.fps
    const opened = performance.now()
    let seq = 0
    for await (const frame of decoder.frames(demuxer.packets())) {
      if (!this.running) return
      if (frame === null) break
      await filter.process(frame)
      frame.free()
      for (let out = await filter.receive(); out !== null && out !== undefined; out = await filter.receive()) {
        if (pace) await this.sleep(opened + seq * interval - performance.now())
        if (!this.running) { out.free(); return }
        // The frame's own memory, not a copy: a fresh 1.2 MB buffer per frame costs more than decoding it.
        const rgb = (out.data as Buffer[])[0] as Buffer
        this.framesIn++
        this.onFrame({ rgb, width: out.width, height: out.height, stride: out.linesize[0] ?? out.width * 3, at: Date.now(), seq: seq++ })
        out.free()
      }
    }
  }

  private async sleep (ms: number): Promise<void> {
    if (ms <= 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => { clearTimeout(timer); resolve() }
    })
  }
}
