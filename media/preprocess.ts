/**
 * Frames into model inputs. The decode thread keeps the frames of its rate (FrameRate), FFmpeg's filter graph does
 * the heavy part (scaling with letterbox, pixel format), so a frame arrives as packed RGB24 at the model's size;
 * this is the one pass that turns it into the model's input: Float32 or bytes, planar (NCHW) or packed (NHWC),
 * scaled as the model was trained.
 */

/** How a model takes its frame: from its signature, its camera's `detector.input` settings and its type's defaults. */
export interface InputFormat {
  layout: 'nchw' | 'nhwc'
  dtype: 'float32' | 'uint8'
  /** x/255 ("0-1"), ImageNet's mean and std over x/255 ("imagenet"), or the byte as it is ("none"). */
  scale: '0-1' | 'imagenet' | 'none'
  /** The model's channel order: "rgb", or "bgr" (PaddleOCR, OpenCV-trained models). */
  channels: 'rgb' | 'bgr'
}

/** Per channel, on the 0–1 scale, in the model's channel order (as PaddleOCR applies ImageNet's to BGR). */
export interface Normalization {
  mean: readonly [number, number, number]
  std: readonly [number, number, number]
  channels: 'rgb' | 'bgr'
}

/** ImageNet statistics, which most vision models (PaddleOCR's detector among them) were trained with. */
export const IMAGENET: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channels: 'rgb' }

/** PaddleOCR's detector: ImageNet statistics over BGR (its images are read with OpenCV), float32 NCHW. */
export const PADDLE_OCR: InputFormat = { layout: 'nchw', dtype: 'float32', scale: 'imagenet', channels: 'bgr' }

/**
 * The FFmpeg filter graph that brings any frame to `width`×`height` RGB24, letterboxed, at `fps`: FFmpeg's `fps`
 * filter, then shapeGraph. The CLI's and the benchmarks' (the decode thread picks its frames with FrameRate).
 */
export function filterGraph (options: { width: number, height: number, fps: number }): string {
  return `fps=${options.fps},${shapeGraph(options)}`
}

/**
 * The decode thread's graph: a frame to `width`×`height` RGB24, letterboxed, scaled on the calling thread
 * (`threads=1`: a box runs a thread per camera, and scaling split over every core's helper threads adds their
 * wake-ups and CPU to each frame for a few milliseconds' less latency at most).
 */
export function shapeGraph ({ width, height }: { width: number, height: number }): string {
  return [
    `scale=${width}:${height}:force_original_aspect_ratio=decrease:threads=1`,
    `pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2`,
    'format=rgb24'
  ].join(',')
}

/**
 * FFmpeg's AV_NOPTS_VALUE: a frame without a timestamp (node-av's constant not imported: this module is loaded on
 * the event loop, where node-av never is).
 */
const NO_TIMESTAMP = -(2n ** 63n)
/** A jump forward in the timestamps longer than this is a cut, played as one frame interval (FrameRate). */
const MAX_GAP_S = 10

/**
 * The decode thread's frame rate, from the frames' timestamps: a frame is kept when it is the first of its 1/fps
 * slot of the stream's time, the slots counted from the first frame (so that a source at `fps` whose timestamps
 * jitter keeps every frame), so that only the frames kept are scaled, and the frame kept is the decoded one (the
 * source frame a snapshot draws on). Unlike FFmpeg's `fps` filter, a graph of its own (a decode thread with two
 * graphs collected its garbage twice as often: bench/cameras), it holds no frame until the next one comes (a
 * frame interval's latency) and never repeats one: a source slower than `fps` gives each of its frames once.
 * Timestamps that go back (a stream that restarted or wrapped) start it over; a jump forward of more than
 * MAX_GAP_S (a recording's cut, or a file made to stall its camera) is due a frame interval after the frame before,
 * not after the gap; a frame without a timestamp is timed by the clock.
 */
export class FrameRate {
  private readonly fps: number
  /** The slot of the last frame kept; the time of the first (seconds, the stream's), and when that was kept. */
  private slot: number | undefined
  private first = 0
  private anchor = 0
  /** When the last frame kept is due (performance.now()), if the source is played at its own pace (a file). */
  due = 0

  constructor (fps: number) {
    this.fps = fps
  }

  /** Whether the frame of `timestamp` (in `timeBase`) is kept; if so, `due` says when it is due. */
  keep (timestamp: bigint | number | null | undefined, timeBase: { num: number, den: number }): boolean {
    const timed = timestamp !== null && timestamp !== undefined && timestamp !== NO_TIMESTAMP && timeBase.num > 0 && timeBase.den > 0
    const now = performance.now()
    const seconds = timed ? Number(timestamp) * timeBase.num / timeBase.den : now / 1000
    let slot = Math.round((seconds - this.first) * this.fps)
    if (this.slot !== undefined && slot === this.slot) return false
    if (this.slot === undefined || slot < this.slot) {
      this.first = seconds
      this.anchor = now
      slot = 0
    } else if ((slot - this.slot) / this.fps > MAX_GAP_S) {
      this.first = seconds
      this.anchor = this.due + 1000 / this.fps
      slot = 0
    }
    this.slot = slot
    this.due = this.anchor + (seconds - this.first) * 1000
    return true
  }
}

/**
 * Packed RGB24 (`stride` bytes a row) → the model's input as its format says, into `out` when it is of the
 * right type and size (reused from frame to frame).
 */
export function frameToTensor (rgb: Uint8Array, width: number, height: number, format: InputFormat,
  { stride = width * 3, out }: { stride?: number, out?: Float32Array | Uint8Array } = {}): Float32Array | Uint8Array {
  const size = 3 * width * height
  if (format.dtype === 'uint8') {
    const bytes = out instanceof Uint8Array && out.length === size ? out : new Uint8Array(size)
    return format.layout === 'nhwc' ? rgbToBytesNhwc(rgb, width, height, format.channels, stride, bytes) : rgbToBytesNchw(rgb, width, height, format.channels, stride, bytes)
  }
  const norm: Normalization = format.scale === 'imagenet'
    ? { ...IMAGENET, channels: format.channels }
    : { mean: [0, 0, 0], std: format.scale === 'none' ? [1 / 255, 1 / 255, 1 / 255] : [1, 1, 1], channels: format.channels }
  const floats = out instanceof Float32Array && out.length === size ? out : undefined
  return format.layout === 'nchw' ? rgbToTensor(rgb, width, height, norm, { stride, out: floats }) : rgbToTensorNhwc(rgb, width, height, norm, stride, floats ?? new Float32Array(size))
}

/** The per-value multiply-add that (x/255 − mean)/std folds into, per output channel. */
function affine (norm: Normalization): { order: [number, number, number], scale: [number, number, number], offset: [number, number, number] } {
  const order: [number, number, number] = norm.channels === 'rgb' ? [0, 1, 2] : [2, 1, 0]
  const scale = order.map((_, c) => 1 / (255 * (norm.std[c] as number))) as [number, number, number]
  const offset = order.map((_, c) => (norm.mean[c] as number) / (norm.std[c] as number)) as [number, number, number]
  return { order, scale, offset }
}

function rgbToTensorNhwc (rgb: Uint8Array, width: number, height: number, norm: Normalization, stride: number, out: Float32Array): Float32Array {
  const { order: [r, g, b], scale: [s0, s1, s2], offset: [o0, o1, o2] } = affine(norm)
  for (let y = 0; y < height; y++) {
    let i = y * stride
    let o = y * width * 3
    for (let x = 0; x < width; x++, i += 3, o += 3) {
      out[o] = (rgb[i + r] as number) * s0 - o0
      out[o + 1] = (rgb[i + g] as number) * s1 - o1
      out[o + 2] = (rgb[i + b] as number) * s2 - o2
    }
  }
  return out
}

function rgbToBytesNhwc (rgb: Uint8Array, width: number, height: number, channels: 'rgb' | 'bgr', stride: number, out: Uint8Array): Uint8Array {
  const row = width * 3
  for (let y = 0; y < height; y++) {
    if (channels === 'rgb') {
      out.set(rgb.subarray(y * stride, y * stride + row), y * row)
      continue
    }
    for (let i = y * stride, o = y * row, end = o + row; o < end; i += 3, o += 3) {
      out[o] = rgb[i + 2] as number
      out[o + 1] = rgb[i + 1] as number
      out[o + 2] = rgb[i] as number
    }
  }
  return out
}

function rgbToBytesNchw (rgb: Uint8Array, width: number, height: number, channels: 'rgb' | 'bgr', stride: number, out: Uint8Array): Uint8Array {
  const plane = width * height
  const [r, g, b] = channels === 'rgb' ? [0, 1, 2] : [2, 1, 0]
  for (let y = 0; y < height; y++) {
    for (let x = 0, i = y * stride, p = y * width; x < width; x++, i += 3, p++) {
      out[p] = rgb[i + r] as number
      out[plane + p] = rgb[i + g] as number
      out[2 * plane + p] = rgb[i + b] as number
    }
  }
  return out
}

/**
 * Packed RGB24 (`stride` bytes a row) → Float32 NCHW, (x/255 − mean) / std, into `out` when given (reused
 * from frame to frame: a fresh multi-megabyte buffer per frame costs page faults on the event loop).
 */
export function rgbToTensor (rgb: Uint8Array, width: number, height: number, norm: Normalization,
  { stride = width * 3, out }: { stride?: number, out?: Float32Array } = {}): Float32Array {
  const plane = width * height
  const tensor = out ?? new Float32Array(3 * plane)
  if (tensor.length !== 3 * plane) throw new RangeError(`the output holds ${tensor.length} values, not 3×${width}×${height}`)
  // Fold the normalization into one multiply-add per value: (x/255 − m)/s = x·(1/(255s)) − m/s.
  const { order: [r, g, b], scale: [s0, s1, s2], offset: [o0, o1, o2] } = affine(norm)
  for (let y = 0; y < height; y++) {
    let i = y * stride
    let p = y * width
    const end = p + width
    for (; p < end; p++, i += 3) {
      tensor[p] = (rgb[i + r] as number) * s0 - o0
      tensor[plane + p] = (rgb[i + g] as number) * s1 - o1
      tensor[2 * plane + p] = (rgb[i + b] as number) * s2 - o2
    }
  }
  return tensor
}
