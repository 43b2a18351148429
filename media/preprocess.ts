/**
 * Frames into model inputs. FFmpeg's filter graph has already done the heavy part (frame rate, scaling with
 * letterbox, pixel format), so a frame arrives as packed RGB24 at the model's size; this is the one pass that
 * turns it into a normalized Float32 NCHW tensor.
 */

export interface Normalization {
  /** Per channel, in the model's channel order, on the 0–1 scale. */
  mean: readonly [number, number, number]
  std: readonly [number, number, number]
  /** The model's channel order: "rgb", or "bgr" (PaddleOCR, OpenCV-trained models). */
  channels: 'rgb' | 'bgr'
}

/** ImageNet statistics, which most vision models (PaddleOCR's detector among them) were trained with. */
export const IMAGENET: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channels: 'rgb' }

/** PaddleOCR's models: ImageNet statistics over BGR (its images are read with OpenCV). */
export const PADDLE_OCR: Normalization = { ...IMAGENET, channels: 'bgr' }

/** The FFmpeg filter graph that brings any frame to `width`×`height` RGB24, letterboxed, at `fps`. */
export function filterGraph ({ width, height, fps }: { width: number, height: number, fps: number }): string {
  return [
    `fps=${fps}`,
    `scale=${width}:${height}:force_original_aspect_ratio=decrease`,
    `pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2`,
    'format=rgb24'
  ].join(',')
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
  const source = norm.channels === 'rgb' ? [0, 1, 2] : [2, 1, 0]
  const scale = source.map((_, c) => 1 / (255 * (norm.std[c] as number)))
  const offset = source.map((_, c) => (norm.mean[c] as number) / (norm.std[c] as number))
  const [r, g, b] = source as [number, number, number]
  const [s0, s1, s2] = scale as [number, number, number]
  const [o0, o1, o2] = offset as [number, number, number]
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
