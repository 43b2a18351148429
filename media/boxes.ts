/** `[x1, y1, x2, y2]`: the one box format (media/detections.ts). */
export type Corners = readonly [number, number, number, number]

/** Intersection over union of two boxes: 0 when they do not overlap. */
export function iou (a: Corners, b: Corners): number {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0])
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1])
  if (w <= 0 || h <= 0) return 0
  const inter = w * h
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/**
 * The `capacity` best of what is offered, by score: a min-heap of scores and indexes, so a scan over millions of
 * anchors keeps O(capacity) memory and O(log capacity) per offer, whatever order a model puts its scores in.
 */
export class TopScores {
  private readonly scores: Float64Array
  private readonly indexes: Int32Array
  private readonly extra: Int32Array
  size = 0

  constructor (capacity: number) {
    this.scores = new Float64Array(capacity)
    this.indexes = new Int32Array(capacity)
    this.extra = new Int32Array(capacity)
  }

  /** Offers `score` for item `index` (and a number that goes with it: its class). */
  offer (score: number, index: number, extra = 0): void {
    const capacity = this.scores.length
    if (this.size < capacity) {
      let i = this.size++
      // Sift up.
      while (i > 0) {
        const parent = (i - 1) >> 1
        if ((this.scores[parent] as number) <= score) break
        this.move(parent, i)
        i = parent
      }
      this.put(i, score, index, extra)
      return
    }
    if (capacity === 0 || score <= (this.scores[0] as number)) return
    // Replace the smallest, sift down.
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      if (left >= capacity) break
      const right = left + 1
      const child = right < capacity && (this.scores[right] as number) < (this.scores[left] as number) ? right : left
      if ((this.scores[child] as number) >= score) break
      this.move(child, i)
      i = child
    }
    this.put(i, score, index, extra)
  }

  /** What was kept: score, index and extra of each, in no order. */
  * entries (): Generator<[number, number, number]> {
    for (let i = 0; i < this.size; i++) yield [this.scores[i] as number, this.indexes[i] as number, this.extra[i] as number]
  }

  private move (from: number, to: number): void {
    this.scores[to] = this.scores[from] as number
    this.indexes[to] = this.indexes[from] as number
    this.extra[to] = this.extra[from] as number
  }

  private put (i: number, score: number, index: number, extra: number): void {
    this.scores[i] = score
    this.indexes[i] = index
    this.extra[i] = extra
  }
}
