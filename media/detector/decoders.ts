/**
 * Model outputs → boxes, one decoder per output layout people export. Every decoder reads the tensors as they
 * come (a model file is not trusted: a wrong shape or type is a DetectorError naming the output, a NaN is no
 * detection) and gives boxes in the model's input pixels; plan.ts maps them to the source frame.
 */
import { DetectorError } from '../../common/errors.ts'
import type { WireTensor } from '../../runtime/tensors.ts'
import { iou, TopScores } from '../boxes.ts'
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
/** The largest class id read: an id past it (or not whole) is no detection. */
const MAX_CLASS_ID = 100_000
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

/** A class id as a model gave it: a whole number from 0 (a float within a rounding error of one), else none. */
function classId (value: number): number | undefined {
  const id = Math.round(value)
  return Math.abs(value - id) <= 1e-3 && id >= 0 && id <= MAX_CLASS_ID ? id : undefined
}

/** Boxes `[…, 4]`, or a DetectorError naming the output. */
function corners (t: { dims: number[] }, name: string): void {
  if (t.dims.at(-1) !== 4) throw new DetectorError(`output "${name}" has shape [${t.dims.join(', ')}], not 4 numbers a box`)
}

/** Normalized boxes (every corner within 0–1.5) are scaled to the input; boxes in pixels are left as they are. */
function toPixels (boxes: RawBox[], width: number, height: number): RawBox[] {
  if (!boxes.every((b) => b.x2 <= 1.5 && b.y2 <= 1.5)) return boxes
  return boxes.map((b) => ({ ...b, x1: b.x1 * width, x2: b.x2 * width, y1: b.y1 * height, y2: b.y2 * height }))
}

function fromCenter (classId: number, score: number, cx: number, cy: number, w: number, h: number): RawBox {
  return { classId, score, x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2 }
}

function usable (b: RawBox): boolean {
  return Number.isFinite(b.x1) && Number.isFinite(b.y1) && Number.isFinite(b.x2) && Number.isFinite(b.y2) && b.x2 > b.x1 && b.y2 > b.y1
}

/**
 * The layouts of a YOLO export's one output, `[1, A, B]`:
 * - `v8`: v8, v9, v11, `[1, 4 + C, N]`, channels first: centre boxes in input pixels, then C class scores;
 * - `v5`: `[1, N, 5 + C]`: the box, an objectness that multiplies the class scores, C class scores;
 * - `v8t`: `[1, N, 4 + C]`, channels last without objectness (Ultralytics' RT-DETR export, transposed v8 exports);
 * - `e2e`: `[1, N, 6]`, `x1, y1, x2, y2, score, class` with NMS done (YOLOv10, YOLO26, `nms=True` exports).
 * Boxes of `v8t` and `e2e` may be normalized: they are scaled to the input when every corner is within 0–1.5.
 */
export type YoloLayout = 'v8' | 'v5' | 'v8t' | 'e2e'

export function decodeYolo (outputs: Record<string, WireTensor>, name: string, minScore: number, layout: YoloLayout | undefined, width: number, height: number): RawBox[] {
  const { data, dims } = values(outputs, name, 3)
  const [batch, a, b] = dims as [number, number, number]
  if (batch !== 1) throw new DetectorError(`output "${name}" has a batch of ${batch}, not 1`)
  // Where the declared shape said nothing (both sizes free), the larger side is the anchors.
  const kind = layout ?? (a < b ? 'v8' : 'v5')
  const channelsFirst = kind === 'v8'
  const n = channelsFirst ? b : a
  const row = channelsFirst ? a : b
  const first = kind === 'v5' ? 5 : 4
  const classes = kind === 'e2e' ? 1 : row - first
  if (classes < 1 || (kind === 'e2e' && row < 6)) throw new DetectorError(`output "${name}" has shape [${dims.join(', ')}]: no class scores after the box`)
  const at = channelsFirst ? (j: number, k: number) => k * n + j : (j: number, k: number) => j * row + k
  const kept = new TopScores(MAX_CANDIDATES)
  for (let j = 0; j < n; j++) {
    let score: number
    let cls = 0
    if (kind === 'e2e') {
      score = num(data, at(j, 4))
      const id = classId(num(data, at(j, 5)))
      if (id === undefined) continue
      cls = id
    } else {
      const objectness = kind === 'v5' ? num(data, at(j, 4)) : 1
      if (!(objectness >= minScore)) continue
      score = -Infinity
      for (let c = 0; c < classes; c++) {
        const s = num(data, at(j, first + c))
        if (s > score) { score = s; cls = c }
      }
      score *= objectness
    }
    if (score >= minScore && score !== Infinity) kept.offer(score, j, cls)
  }
  const found: RawBox[] = []
  for (const [score, j, cls] of kept.entries()) {
    const [p, q, r, s] = [num(data, at(j, 0)), num(data, at(j, 1)), num(data, at(j, 2)), num(data, at(j, 3))]
    found.push(kind === 'e2e' ? { classId: cls, score, x1: p, y1: q, x2: r, y2: s } : fromCenter(cls, score, p, q, r, s))
  }
  const boxes = found.filter(usable)
  const scaled = kind === 'v8t' || kind === 'e2e' ? toPixels(boxes, width, height) : boxes
  return kind === 'e2e' ? scaled : nms(scaled)
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
  corners(boxes, names.boxes)
  const n = Math.min(boxes.dims[1] as number, classes.data.length, scores.data.length, Math.floor(boxes.data.length / 4))
  const valid = Math.max(0, Math.min(n, Math.floor(num(count.data, 0)) || 0))
  const kept = new TopScores(MAX_CANDIDATES)
  for (let i = 0; i < valid; i++) {
    const score = num(scores.data, i)
    const id = classId(num(classes.data, i))
    if (score >= minScore && score !== Infinity && id !== undefined) kept.offer(score, i, id)
  }
  const found: RawBox[] = []
  for (const [score, i, id] of kept.entries()) {
    const at = i * 4
    found.push({ classId: id, score, y1: num(boxes.data, at) * height, x1: num(boxes.data, at + 1) * width, y2: num(boxes.data, at + 2) * height, x2: num(boxes.data, at + 3) * width })
  }
  return found.filter(usable)
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
    corners(boxes, names.boxes)
    const n = Math.min(labels.data.length, scores.data.length, Math.floor(boxes.data.length / 4))
    const sx = names.normalized ? width : 1
    const sy = names.normalized ? height : 1
    const kept = new TopScores(MAX_CANDIDATES)
    for (let i = 0; i < n; i++) {
      const score = num(scores.data, i)
      const id = classId(num(labels.data, i))
      if (score >= minScore && score !== Infinity && id !== undefined) kept.offer(score, i, id)
    }
    for (const [score, i, id] of kept.entries()) {
      const at = i * 4
      found.push({ classId: id, score, x1: num(boxes.data, at) * sx, y1: num(boxes.data, at + 1) * sy, x2: num(boxes.data, at + 2) * sx, y2: num(boxes.data, at + 3) * sy })
    }
  } else {
    const boxes = values(outputs, names.boxes, 3)
    const logits = values(outputs, names.logits, 3)
    corners(boxes, names.boxes)
    const n = Math.min(boxes.dims[1] as number, logits.dims[1] as number, Math.floor(boxes.data.length / 4))
    const classes = logits.dims[2] as number
    if (!(classes >= 1) || logits.data.length < n * classes) throw new DetectorError(`output "${names.logits}" has shape [${logits.dims.join(', ')}]: not one row of class logits per box`)
    const kept = new TopScores(MAX_CANDIDATES)
    for (let i = 0; i < n; i++) {
      let logit = -Infinity
      let cls = 0
      for (let c = 0; c < classes; c++) {
        const v = num(logits.data, i * classes + c)
        if (v > logit) { logit = v; cls = c }
      }
      const score = 1 / (1 + Math.exp(-logit))
      if (score >= minScore) kept.offer(score, i, cls)
    }
    for (const [score, i, cls] of kept.entries()) {
      const at = i * 4
      found.push(fromCenter(cls, score, num(boxes.data, at) * width, num(boxes.data, at + 1) * height, num(boxes.data, at + 2) * width, num(boxes.data, at + 3) * height))
    }
  }
  return found.filter(usable)
}

/** A DB text detector's probability map (PP-OCR): `[1, 1, H, W]`. */
export function decodeText (outputs: Record<string, WireTensor>, name: string, minScore: number): RawBox[] {
  const { data, dims } = values(outputs, name, 4)
  const [, , h, w] = dims as [number, number, number, number]
  if (!(data instanceof Float32Array) || data.length < w * h) throw new DetectorError(`output "${name}" is not a float32 map of [1, 1, ${h}, ${w}]`)
  const regions = textRegions(data, w, h, { threshold: minScore })
  const kept = new TopScores(MAX_CANDIDATES)
  regions.forEach((r, i) => { kept.offer(r.score, i) })
  return [...kept.entries()].map(([, i]) => {
    const { score, box } = regions[i] as (typeof regions)[number]
    return { classId: 0, score, x1: box.x, y1: box.y, x2: box.x + box.width, y2: box.y + box.height }
  })
}

/** Class-aware greedy non-maximum suppression: of boxes of one class overlapping past `threshold`, the best stays. */
export function nms (boxes: RawBox[], threshold = NMS_IOU): RawBox[] {
  const sorted = boxes.map((box) => ({ box, corners: [box.x1, box.y1, box.x2, box.y2] as const })).sort((a, b) => b.box.score - a.box.score)
  const kept: typeof sorted = []
  for (const candidate of sorted) {
    if (kept.every((k) => k.box.classId !== candidate.box.classId || iou(k.corners, candidate.corners) <= threshold)) kept.push(candidate)
  }
  return kept.map((k) => k.box)
}
