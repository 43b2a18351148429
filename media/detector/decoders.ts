/**
 * Model outputs → boxes, one decoder per output layout people export. Every decoder reads the tensors as they
 * come (a model file is not trusted: a wrong shape or type is a DetectorError naming the output, a NaN is no
 * detection) and gives boxes in the model's input pixels; plan.ts maps them to the source frame.
 */
import { DetectorError } from '../../common/errors.ts'
import type { WireTensor } from '../../runtime/tensors.ts'
import { textRegions } from '../detections.ts'

/** A box in the model's input pixels, with its class id and score. */
export interface RawBox {
  classId: number
  score: number
  x1: number
  y1: number
  x2: number
  y2: number
}

/** The most candidates one frame keeps before NMS (YOLO's anchors above the score): the best by score. */
export const MAX_CANDIDATES = 1_000
/** The most values a detector's output may hold: a 1280×1280 YOLO's is 2.8 M; decoding runs on the event loop. */
export const MAX_OUTPUT_VALUES = 16 * 1024 * 1024
/** Two boxes of a class that overlap by more than this are one object (YOLO's usual NMS threshold). */
export const NMS_IOU = 0.45

/** The output named `name`, as a float or integer tensor of `rank` dimensions. */
function values (outputs: Record<string, WireTensor>, name: string, rank: number): { data: ArrayLike<number | bigint>, dims: number[] } {
  const t = outputs[name]
  if (t === undefined) throw new DetectorError(`the model gave no output "${name}"`)
  if (t.dims.length !== rank) throw new DetectorError(`output "${name}" has shape [${t.dims.join(', ')}], not ${rank} dimensions`)
  if (t.data.length > MAX_OUTPUT_VALUES) throw new DetectorError(`output "${name}" holds ${t.data.length} values, over ${MAX_OUTPUT_VALUES}`)
  if (t.dtype === 'float16' || t.dtype === 'bool' || t.dtype === 'string') throw new DetectorError(`output "${name}" is ${t.dtype}, not a float or integer tensor`)
  return { data: t.data as ArrayLike<number | bigint>, dims: t.dims }
}

function num (data: ArrayLike<number | bigint>, i: number): number {
  return Number(data[i])
}

/**
 * Keeps the `limit` best candidates when there are more, in O(n): the score of the limit-th best is found by
 * selection, not by sorting every anchor (a hostile model may mark all of them).
 */
function best (boxes: RawBox[], limit = MAX_CANDIDATES): RawBox[] {
  if (boxes.length <= limit) return boxes
  const scores = Float64Array.from(boxes, (b) => b.score)
  const cut = select(scores, scores.length - limit)
  const kept = boxes.filter((b) => b.score > cut)
  for (const b of boxes) {
    if (kept.length >= limit) break
    if (b.score === cut) kept.push(b)
  }
  return kept
}

/** The k-th smallest value (0-based), rearranging `a` (Hoare's selection). */
function select (a: Float64Array, k: number): number {
  let lo = 0
  let hi = a.length - 1
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1] as number
    let i = lo
    let j = hi
    while (i <= j) {
      while ((a[i] as number) < pivot) i++
      while ((a[j] as number) > pivot) j--
      if (i <= j) {
        const t = a[i] as number; a[i] = a[j] as number; a[j] = t
        i++; j--
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return a[k] as number
  }
  return a[k] as number
}

function fromCenter (classId: number, score: number, cx: number, cy: number, w: number, h: number): RawBox {
  return { classId, score, x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2 }
}

function usable (b: RawBox): boolean {
  return Number.isFinite(b.x1) && Number.isFinite(b.y1) && Number.isFinite(b.x2) && Number.isFinite(b.y2) && b.x2 > b.x1 && b.y2 > b.y1
}

/**
 * Ultralytics YOLO, one output of centre boxes in input pixels and per-class scores:
 * - v8, v9, v11: `[1, 4 + C, N]`, channels first (4 + C < N);
 * - v5: `[1, N, 5 + C]`, with an objectness score that multiplies the class scores.
 * `layout` is what the declared shape says; where it says nothing (both sizes free), the larger side is the anchors.
 */
export function decodeYolo (outputs: Record<string, WireTensor>, name: string, minScore: number, layout?: 'v8' | 'v5'): RawBox[] {
  const { data, dims } = values(outputs, name, 3)
  const [batch, a, b] = dims as [number, number, number]
  if (batch !== 1) throw new DetectorError(`output "${name}" has a batch of ${batch}, not 1`)
  const found: RawBox[] = []
  if ((layout ?? (a < b ? 'v8' : 'v5')) === 'v8') {
    // v8: row r of anchor j at r·N + j.
    const n = b
    const classes = a - 4
    if (classes < 1) throw new DetectorError(`output "${name}" has shape [${dims.join(', ')}]: no class scores after the box`)
    for (let j = 0; j < n; j++) {
      let score = -Infinity
      let cls = 0
      for (let c = 0; c < classes; c++) {
        const s = num(data, (4 + c) * n + j)
        if (s > score) { score = s; cls = c }
      }
      if (!(score >= minScore)) continue
      found.push(fromCenter(cls, score, num(data, j), num(data, n + j), num(data, 2 * n + j), num(data, 3 * n + j)))
    }
  } else {
    const classes = b - 5
    if (classes < 1) throw new DetectorError(`output "${name}" has shape [${dims.join(', ')}]: no class scores after the box and objectness`)
    for (let j = 0; j < a; j++) {
      const row = j * b
      const objectness = num(data, row + 4)
      if (!(objectness >= minScore)) continue
      let score = -Infinity
      let cls = 0
      for (let c = 0; c < classes; c++) {
        const s = num(data, row + 5 + c)
        if (s > score) { score = s; cls = c }
      }
      score *= objectness
      if (!(score >= minScore)) continue
      found.push(fromCenter(cls, score, num(data, row), num(data, row + 1), num(data, row + 2), num(data, row + 3)))
    }
  }
  return nms(best(found.filter(usable)))
}

/** The outputs of an SSD export (TF Object Detection API names), found by name in plan.ts. */
export interface SsdOutputs { boxes: string, classes: string, scores: string, count: string }

/**
 * TF Object Detection API SSD: `detection_boxes` `[1, N, 4]` normalized (ymin, xmin, ymax, xmax),
 * `detection_classes` and `detection_scores` `[1, N]`, `num_detections` `[1]`. The model has done its NMS.
 */
export function decodeSsd (outputs: Record<string, WireTensor>, names: SsdOutputs, minScore: number, width: number, height: number): RawBox[] {
  const boxes = values(outputs, names.boxes, 3)
  const classes = values(outputs, names.classes, 2)
  const scores = values(outputs, names.scores, 2)
  const count = values(outputs, names.count, 1)
  const n = Math.min(boxes.dims[1] as number, classes.data.length, scores.data.length, Math.floor(boxes.data.length / 4))
  const valid = Math.max(0, Math.min(n, Math.floor(num(count.data, 0)) || 0))
  const found: RawBox[] = []
  for (let i = 0; i < valid; i++) {
    const score = num(scores.data, i)
    if (!(score >= minScore)) continue
    const at = i * 4
    found.push({
      classId: Math.round(num(classes.data, i)),
      score,
      y1: num(boxes.data, at) * height,
      x1: num(boxes.data, at + 1) * width,
      y2: num(boxes.data, at + 2) * height,
      x2: num(boxes.data, at + 3) * width
    })
  }
  return best(found.filter(usable))
}

/** The outputs of a DETR-family export, found by name in plan.ts. */
export type DetrOutputs =
  /** RT-DETR, D-FINE: class ids, corner boxes (in the pixels of `orig_target_sizes`, or normalized), scores. */
  | { kind: 'labels-boxes-scores', labels: string, boxes: string, scores: string, normalized: boolean }
  /** RF-DETR: `dets` `[1, N, 4]` normalized centre boxes, `labels` `[1, N, C]` class logits. */
  | { kind: 'dets-logits', boxes: string, logits: string }

/** DETR family: no NMS (each query is one object). */
export function decodeDetr (outputs: Record<string, WireTensor>, names: DetrOutputs, minScore: number, width: number, height: number): RawBox[] {
  const found: RawBox[] = []
  if (names.kind === 'labels-boxes-scores') {
    const labels = values(outputs, names.labels, 2)
    const boxes = values(outputs, names.boxes, 3)
    const scores = values(outputs, names.scores, 2)
    const n = Math.min(labels.data.length, scores.data.length, Math.floor(boxes.data.length / 4))
    const sx = names.normalized ? width : 1
    const sy = names.normalized ? height : 1
    for (let i = 0; i < n; i++) {
      const score = num(scores.data, i)
      if (!(score >= minScore)) continue
      const at = i * 4
      found.push({ classId: num(labels.data, i), score, x1: num(boxes.data, at) * sx, y1: num(boxes.data, at + 1) * sy, x2: num(boxes.data, at + 2) * sx, y2: num(boxes.data, at + 3) * sy })
    }
  } else {
    const boxes = values(outputs, names.boxes, 3)
    const logits = values(outputs, names.logits, 3)
    const n = Math.min(boxes.dims[1] as number, logits.dims[1] as number, Math.floor(boxes.data.length / 4))
    const classes = logits.dims[2] as number
    if (!(classes >= 1) || logits.data.length < n * classes) throw new DetectorError(`output "${names.logits}" has shape [${logits.dims.join(', ')}]: not one row of class logits per box`)
    for (let i = 0; i < n; i++) {
      let logit = -Infinity
      let cls = 0
      for (let c = 0; c < classes; c++) {
        const v = num(logits.data, i * classes + c)
        if (v > logit) { logit = v; cls = c }
      }
      const score = 1 / (1 + Math.exp(-logit))
      if (!(score >= minScore)) continue
      const at = i * 4
      found.push(fromCenter(cls, score, num(boxes.data, at) * width, num(boxes.data, at + 1) * height, num(boxes.data, at + 2) * width, num(boxes.data, at + 3) * height))
    }
  }
  return best(found.filter(usable))
}

/** A DB text detector's probability map (PP-OCR): `[1, 1, H, W]`. */
export function decodeText (outputs: Record<string, WireTensor>, name: string, minScore: number): RawBox[] {
  const { data, dims } = values(outputs, name, 4)
  const [, , h, w] = dims as [number, number, number, number]
  if (!(data instanceof Float32Array) || data.length < w * h) throw new DetectorError(`output "${name}" is not a float32 map of [1, 1, ${h}, ${w}]`)
  return textRegions(data, w, h, { threshold: minScore }).map((d) => ({
    classId: 0, score: d.score, x1: d.box.x, y1: d.box.y, x2: d.box.x + d.box.width, y2: d.box.y + d.box.height
  }))
}

function iou (a: RawBox, b: RawBox): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1)
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1)
  if (w <= 0 || h <= 0) return 0
  const inter = w * h
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter)
}

/** Class-aware greedy non-maximum suppression: of boxes of one class overlapping past `threshold`, the best stays. */
export function nms (boxes: RawBox[], threshold = NMS_IOU): RawBox[] {
  const sorted = [...boxes].sort((a, b) => b.score - a.score)
  const kept: RawBox[] = []
  for (const box of sorted) {
    if (kept.every((k) => k.classId !== box.classId || iou(k, box) <= threshold)) kept.push(box)
  }
  return kept
}
