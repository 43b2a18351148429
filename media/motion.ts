/**
 * Motion, as Frigate gates its detector: a frame moved when enough of a coarse grey grid of it differs from the
 * last frame the camera was given (not from the frame before it: at 30 fps a slow walker changes little between
 * two frames, but much between inferences). Sampling every `step` pixels keeps it to a few thousand reads a frame
 * (640×640 at step 8: 6,400), in the decode thread, so the detector runs only when there is something to find.
 */
export class MotionDetector {
  private readonly step: number
  /** A sample changed when its grey level moved by more than this (of 255): more than a codec's noise. */
  private readonly pixelThreshold: number
  /** A frame moved when more than this share of its samples changed. */
  private readonly areaThreshold: number
  /** The grid of the last frame given to the camera. */
  private reference: Uint8Array | undefined

  constructor ({ step = 8, pixelThreshold = 25, areaThreshold = 0.002 }: { step?: number, pixelThreshold?: number, areaThreshold?: number } = {}) {
    this.step = step
    this.pixelThreshold = pixelThreshold
    this.areaThreshold = areaThreshold
  }

  /** The coarse grey grid of packed RGB24 `rgb` (`stride` bytes a row). */
  grid (rgb: Uint8Array, width: number, height: number, stride = width * 3): Uint8Array {
    const columns = Math.ceil(width / this.step)
    const rows = Math.ceil(height / this.step)
    const grid = new Uint8Array(columns * rows)
    for (let gy = 0; gy < rows; gy++) {
      let i = gy * this.step * stride
      for (let gx = 0; gx < columns; gx++, i += this.step * 3) {
        // Integer luma (BT.601 weights over 256).
        grid[gy * columns + gx] = ((rgb[i] as number) * 77 + (rgb[i + 1] as number) * 150 + (rgb[i + 2] as number) * 29) >> 8
      }
    }
    return grid
  }

  /** Whether a frame's grid differs from the last frame given; with none given yet, it does. */
  moved (grid: Uint8Array): boolean {
    const reference = this.reference
    if (reference === undefined || reference.length !== grid.length) return true
    let changed = 0
    const enough = this.areaThreshold * grid.length
    for (let k = 0; k < grid.length; k++) {
      if (Math.abs((grid[k] as number) - (reference[k] as number)) > this.pixelThreshold && ++changed > enough) return true
    }
    return false
  }

  /** The frame of `grid` was given to the camera: what comes next is compared with it. */
  given (grid: Uint8Array): void {
    this.reference = grid
  }
}
