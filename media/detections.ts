/**
 * What a detector found in a frame: one box format everywhere (the store, the mesh, MQTT, events),
 * `[x1, y1, x2, y2]` in the source frame's pixels, the letterbox undone.
 */
export interface Detection {
  label: string
  score: number
  box: [number, number, number, number]
}

/** A text region in the probability map's pixels. */
export interface TextRegion {
  label: 'text'
  score: number
  box: { x: number, y: number, width: number, height: number }
}

/**
 * Text regions from a DB-style text detector's probability map (PP-OCR's detector: [1, 1, H, W], one
 * probability per pixel that it is text). The map is max-pooled into `cell`×`cell` cells, thresholded, and the
 * 4-connected groups of cells become boxes: coarse, but a few milliseconds at 640×640 on the event loop.
 */
export function textRegions (prob: Float32Array, width: number, height: number,
  { threshold = 0.3, cell = 4, minCells = 2 }: { threshold?: number, cell?: number, minCells?: number } = {}): TextRegion[] {
  const gw = Math.ceil(width / cell)
  const gh = Math.ceil(height / cell)
  const grid = new Float32Array(gw * gh)
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / cell) * gw
    for (let x = 0; x < width; x++) {
      const p = prob[y * width + x] as number
      const g = row + Math.floor(x / cell)
      if (p > (grid[g] as number)) grid[g] = p
    }
  }
  const seen = new Uint8Array(gw * gh)
  const stack = new Int32Array(gw * gh)
  const found: TextRegion[] = []
  for (let start = 0; start < grid.length; start++) {
    if (seen[start] === 1 || (grid[start] as number) < threshold) continue
    let top = 0
    stack[top++] = start
    seen[start] = 1
    let cells = 0
    let sum = 0
    let x0 = gw; let y0 = gh; let x1 = 0; let y1 = 0
    while (top > 0) {
      const g = stack[--top] as number
      const gx = g % gw
      const gy = (g - gx) / gw
      cells++
      sum += grid[g] as number
      if (gx < x0) x0 = gx
      if (gx > x1) x1 = gx
      if (gy < y0) y0 = gy
      if (gy > y1) y1 = gy
      const neighbours = [gx > 0 ? g - 1 : -1, gx < gw - 1 ? g + 1 : -1, gy > 0 ? g - gw : -1, gy < gh - 1 ? g + gw : -1]
      for (const n of neighbours) {
        if (n >= 0 && seen[n] === 0 && (grid[n] as number) >= threshold) {
          seen[n] = 1
          stack[top++] = n
        }
      }
    }
    if (cells < minCells) continue
    found.push({
      label: 'text',
      score: Math.round(sum / cells * 1000) / 1000,
      box: { x: x0 * cell, y: y0 * cell, width: Math.min(width, (x1 + 1) * cell) - x0 * cell, height: Math.min(height, (y1 + 1) * cell) - y0 * cell }
    })
  }
  return found
}
