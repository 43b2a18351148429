/**
 * A camera's detector, set up once from the model's signature and the camera's `detector` settings: which input
 * takes the frame (its layout, type and size), what else the model needs fed, and which decoder reads its
 * outputs. `auto` recognises the standard exports by their inputs and outputs; what it cannot tell apart is a
 * DetectorError that says what to set.
 */
import { DetectorError } from '../../common/errors.ts'
import type { DetectorConfig } from '../../protocols/work.ts'
import type { Feeds, TensorSpec, WireTensor } from '../../runtime/tensors.ts'
import type { Detection } from '../detections.ts'
import type { InputFormat } from '../preprocess.ts'
import { decodeDetr, decodeSsd, decodeText, decodeYolo } from './decoders.ts'
import type { DetrOutputs, RawBox, SsdOutputs, YoloLayout } from './decoders.ts'
import { LabelMap, metadataLabels } from './labels.ts'

export type DetectorType = Exclude<DetectorConfig['type'], 'auto'>

/** What the plan is made from: the model as the runtime registered it, and the metadata of its file. */
export interface ModelSignature {
  inputs: readonly TensorSpec[]
  outputs: readonly TensorSpec[]
  metadata: Readonly<Record<string, string>>
}

/** The frame a result belongs to, as decoded (before the letterbox). */
export interface FrameGeometry {
  sourceWidth: number
  sourceHeight: number
}

/** The largest side a model's input may declare: the frame is made at that size. */
const MAX_INPUT_SIDE = 4096

export interface DetectorPlan {
  type: DetectorType
  /** The layout decoded, as logs show it (`yolov8`, `ssd`, `rt-detr`…). */
  variant: string
  input: { name: string, width: number, height: number, format: InputFormat, dims: number[] }
  minScore: number
  /** Feeds besides the frame (a DETR's `orig_target_sizes`), fresh for each run (they are transferred). */
  extraFeeds: () => Feeds
  /** The outputs of one run → detections in the source frame's pixels. */
  decode: (outputs: Feeds, frame: FrameGeometry) => Detection[]
}

/** An output's name as matched: lower case, without TensorFlow's `:0`. */
function plain (name: string): string {
  return name.toLowerCase().replace(/:\d+$/, '')
}

function describe (spec: TensorSpec): string {
  return `"${spec.name}" (${spec.dtype} [${spec.shape.join(', ')}])`
}

/** The model's image input, and the inputs besides it that the camera knows how to feed. */
function inputsOf (inputs: readonly TensorSpec[]): { image: TensorSpec, sizes: TensorSpec | undefined } {
  const images = inputs.filter((i) => i.shape.length === 4)
  if (images.length !== 1) {
    throw new DetectorError(images.length === 0
      ? `the model has no image input (one of 4 dimensions) among ${inputs.map(describe).join(', ') || 'none'}`
      : `the model has ${images.length} image inputs (${images.map(describe).join(', ')}): a camera feeds one`)
  }
  const image = images[0] as TensorSpec
  let sizes: TensorSpec | undefined
  for (const input of inputs) {
    if (input === image) continue
    const isSizes = /orig_target_sizes|orig_size/.test(plain(input.name)) && input.shape.length === 2 &&
      ['int64', 'int32', 'float32'].includes(input.dtype)
    if (!isSizes || sizes !== undefined) throw new DetectorError(`the model's input ${describe(input)} is not one a camera can feed (the frame, and a DETR's orig_target_sizes)`)
    sizes = input
  }
  return { image, sizes }
}

function fixed (d: number | string | undefined): number | undefined {
  return typeof d === 'number' && d > 0 ? d : undefined
}

/** The frame's layout, type and size, from the signature first, then the settings, then the defaults. */
function imageFormat (image: TensorSpec, config: DetectorConfig, size: number): { layout: InputFormat['layout'], dtype: InputFormat['dtype'], width: number, height: number } {
  const [, d1, d2, d3] = image.shape
  const declared = fixed(d1) === 3 ? 'nchw' : fixed(d3) === 3 ? 'nhwc' : undefined
  if (declared === undefined && (fixed(d1) !== undefined && fixed(d3) !== undefined)) {
    throw new DetectorError(`input ${describe(image)}: no dimension of 3 colour channels (grey or 4-channel inputs are not fed)`)
  }
  const wanted = config.input.layout
  if (declared !== undefined && wanted !== undefined && wanted !== declared) {
    throw new DetectorError(`detector.input.layout is "${wanted}" but input ${describe(image)} is ${declared}`)
  }
  const dtype = image.dtype
  if (dtype !== 'float32' && dtype !== 'uint8') throw new DetectorError(`input ${describe(image)}: a camera feeds float32 or uint8 frames, not ${dtype}`)
  if (config.input.dtype !== undefined && config.input.dtype !== dtype) {
    throw new DetectorError(`detector.input.dtype is "${config.input.dtype}" but input ${describe(image)} is ${dtype}`)
  }
  const layout = declared ?? wanted ?? (dtype === 'uint8' ? 'nhwc' : 'nchw')
  const [h, w] = layout === 'nchw' ? [d2, d3] : [d1, d2]
  const height = fixed(h) ?? size
  const width = fixed(w) ?? size
  if (width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE || width < 8 || height < 8) {
    throw new DetectorError(`input ${describe(image)} asks for ${width}×${height} frames; a camera makes 8 to ${MAX_INPUT_SIDE} pixels a side`)
  }
  return { layout, dtype, width, height }
}

type Decoding =
  | { type: 'yolo', variant: string, output: string, layout: YoloLayout | undefined }
  | { type: 'ssd', variant: string, outputs: SsdOutputs }
  | { type: 'detr', variant: string, outputs: DetrOutputs }
  | { type: 'text', variant: string, output: string }

/** End-to-end exports (NMS inside) keep a few hundred detections; anchor outputs have thousands. */
const MAX_END_TO_END_ROWS = 1_000

/**
 * Which YOLO layout a `[1, A, B]` output is. The class count from the model's own names decides where it is known
 * (4 + C first: v8; 5 + C last: v5; 4 + C last: v8t; 6 last with NMS inside: e2e); else the fixed sizes: the
 * classes are fixed and the anchors often free, and 6 columns of a few hundred rows are an end-to-end export.
 */
function yoloLayout (output: TensorSpec, classes: number | undefined, endToEnd: boolean): YoloLayout | undefined {
  const [, a, b] = output.shape.map(fixed)
  if (classes !== undefined) {
    if (a === 4 + classes) return 'v8'
    if (b === 5 + classes) return 'v5'
    if (b === 4 + classes) return 'v8t'
    if (b === 6 && (endToEnd || (a ?? 0) <= MAX_END_TO_END_ROWS)) return 'e2e'
    throw new DetectorError(`output ${describe(output)} fits no YOLO layout for the ${classes} classes the model names: set detector.type`)
  }
  if (b === 6 && (endToEnd || (a !== undefined && a <= MAX_END_TO_END_ROWS))) return 'e2e'
  if (a !== undefined && b !== undefined) return a < b ? 'v8' : 'v5'
  return a !== undefined ? 'v8' : b !== undefined ? 'v5' : undefined
}

/** Which decoder reads these outputs: the type asked for, or (auto) the one whose standard outputs are there. */
function decodingOf (type: DetectorConfig['type'], outputs: readonly TensorSpec[], hasSizes: boolean, metadata: Readonly<Record<string, string>>): Decoding {
  const byName = new Map(outputs.map((o) => [plain(o.name), o]))
  const named = (...names: string[]): string | undefined => {
    for (const n of names) {
      const hit = byName.get(n) ?? outputs.find((o) => plain(o.name).endsWith(n))
      if (hit !== undefined) return hit.name
    }
    return undefined
  }
  const ssd = { boxes: named('detection_boxes'), classes: named('detection_classes'), scores: named('detection_scores'), count: named('num_detections') }
  const detr = { labels: named('labels', 'pred_labels'), boxes: named('boxes', 'pred_boxes'), scores: named('scores', 'pred_scores'), dets: named('dets') }
  const single = outputs.length === 1 ? outputs[0] as TensorSpec : undefined
  const listed = outputs.map(describe).join(', ')
  const candidates: Decoding[] = []
  if (ssd.boxes !== undefined && ssd.classes !== undefined && ssd.scores !== undefined && ssd.count !== undefined) {
    candidates.push({ type: 'ssd', variant: 'ssd', outputs: ssd as SsdOutputs })
  }
  if (detr.labels !== undefined && detr.boxes !== undefined && detr.scores !== undefined) {
    candidates.push({ type: 'detr', variant: 'rt-detr', outputs: { kind: 'labels-boxes-scores', labels: detr.labels, boxes: detr.boxes, scores: detr.scores, normalized: !hasSizes } })
  } else if (detr.dets !== undefined && detr.labels !== undefined) {
    candidates.push({ type: 'detr', variant: 'rf-detr', outputs: { kind: 'dets-logits', boxes: detr.dets, logits: detr.labels } })
  }
  // A map as large as the image: its sides free, or of image size (OpenVINO's SSD [1, 1, N, 7] is not one).
  const mapSide = (d: number | string | undefined): boolean => fixed(d) === undefined || (fixed(d) as number) >= 32
  if (single?.shape.length === 4 && single.shape[1] === 1 && mapSide(single.shape[2]) && mapSide(single.shape[3])) {
    candidates.push({ type: 'text', variant: 'db-text', output: single.name })
  }
  if (single?.shape.length === 3) {
    const layout = yoloLayout(single, metadataLabels(metadata)?.length, metadata.end2end === 'True' || metadata.nms === 'True')
    candidates.push({ type: 'yolo', variant: layout === undefined ? 'yolo' : `yolo${layout}`, output: single.name, layout })
  }
  if (type === 'auto') {
    const found = candidates[0]
    if (found === undefined) throw new DetectorError(`cannot tell the detector from the model's outputs (${listed}): set detector.type`)
    return found
  }
  const found = candidates.find((c) => c.type === type)
  if (found !== undefined) return found
  const expected = {
    yolo: 'one output of [1, 4 + classes, anchors] (v8), [1, anchors, 5 + classes] (v5), [1, anchors, 4 + classes] or [1, N, 6] (NMS inside)',
    ssd: 'detection_boxes, detection_classes, detection_scores and num_detections',
    detr: 'labels, boxes and scores (RT-DETR, D-FINE), or dets and labels (RF-DETR)',
    text: 'one probability map of [1, 1, H, W]'
  }[type]
  throw new DetectorError(`detector.type is "${type}", which needs ${expected}; the model's outputs are ${listed}`)
}

/** Box → the source frame: FFmpeg scaled the frame to fit (force_original_aspect_ratio=decrease) and centred it. */
export function letterbox (inputWidth: number, inputHeight: number, frame: FrameGeometry): (x: number, y: number) => [number, number] {
  const { sourceWidth: sw, sourceHeight: sh } = frame
  if (!(sw > 0 && sh > 0)) return (x, y) => [Math.min(Math.max(x, 0), inputWidth), Math.min(Math.max(y, 0), inputHeight)]
  const scaledW = Math.min(inputWidth, Math.round(inputHeight * sw / sh))
  const scaledH = Math.min(inputHeight, Math.round(inputWidth * sh / sw))
  const padX = Math.floor((inputWidth - scaledW) / 2)
  const padY = Math.floor((inputHeight - scaledH) / 2)
  const kx = sw / scaledW
  const ky = sh / scaledH
  return (x, y) => [Math.min(Math.max((x - padX) * kx, 0), sw), Math.min(Math.max((y - padY) * ky, 0), sh)]
}

/** Sets up a camera's detector for a model; throws a DetectorError that names the setting or the input at fault. */
export function planDetector (model: ModelSignature, config: DetectorConfig, camera: { size: number, channels?: 'rgb' | 'bgr' }): DetectorPlan {
  // Ultralytics says what its model does: a pose, segmentation or oriented-box model is not read as boxes.
  const task = model.metadata.task
  if (task !== undefined && task !== 'detect') throw new DetectorError(`the model is an Ultralytics "${task.slice(0, 32)}" model (its metadata says so); a camera reads "detect" models`)
  const { image, sizes } = inputsOf(model.inputs)
  const decoding = decodingOf(config.type, model.outputs, sizes !== undefined, model.metadata)
  const { layout, dtype, width, height } = imageFormat(image, config, camera.size)
  // ImageNet's statistics for a text map and for RF-DETR (its own predict() normalizes so); raw bytes for uint8.
  const imagenet = decoding.type === 'text' || (decoding.type === 'detr' && decoding.outputs.kind === 'dets-logits')
  const defaultScale = dtype === 'uint8' ? 'none' : imagenet ? 'imagenet' : '0-1'
  const scale = config.input.scale ?? defaultScale
  if (dtype === 'uint8' && scale !== 'none') throw new DetectorError(`detector.input.scale is "${scale}", but input ${describe(image)} takes raw bytes: "none"`)
  const format: InputFormat = { layout, dtype, scale, channels: config.input.channels ?? camera.channels ?? 'rgb' }
  const minScore = config.minScore ?? (decoding.type === 'text' ? 0.3 : 0.5)
  const logits = decoding.type === 'detr' && decoding.outputs.kind === 'dets-logits' ? model.outputs.find((o) => o.name === (decoding.outputs as { logits: string }).logits) : undefined
  const fallback = decoding.type === 'ssd' || logits?.shape[2] === 91 ? 'coco91' : 'coco'
  const labels = decoding.type === 'text' ? new LabelMap(['text'], 0) : LabelMap.of(config, metadataLabels(model.metadata), fallback)
  const allowed = config.labelsAllowed === undefined ? undefined : new Set(config.labelsAllowed)
  const dims = layout === 'nchw' ? [1, 3, height, width] : [1, height, width, 3]

  const raw = (outputs: Feeds): RawBox[] => {
    switch (decoding.type) {
      case 'yolo': return decodeYolo(outputs, decoding.output, minScore, decoding.layout, width, height)
      case 'ssd': return decodeSsd(outputs, decoding.outputs, minScore, width, height)
      case 'detr': return decodeDetr(outputs, decoding.outputs, minScore, width, height)
      case 'text': return decodeText(outputs, decoding.output, minScore)
    }
  }
  return {
    type: decoding.type,
    variant: decoding.variant,
    input: { name: image.name, width, height, format, dims },
    minScore,
    // The sizes the boxes come back in are the model's input's: the letterbox is undone like every other's.
    extraFeeds: () => sizes === undefined ? {} : { [sizes.name]: sizeTensor(sizes, width, height) },
    decode: (outputs, frame) => {
      const toSource = letterbox(width, height, frame)
      const found: Detection[] = []
      for (const box of raw(outputs)) {
        const label = labels.name(box.classId)
        if (allowed !== undefined && !allowed.has(label)) continue
        const [x1, y1] = toSource(box.x1, box.y1)
        const [x2, y2] = toSource(box.x2, box.y2)
        const b: Detection['box'] = [Math.round(x1), Math.round(y1), Math.round(x2), Math.round(y2)]
        if (b[2] <= b[0] || b[3] <= b[1]) continue
        found.push({ label, score: Math.round(Math.min(Math.max(box.score, 0), 1) * 1000) / 1000, box: b })
      }
      return found
    }
  }
}

/** `[[width, height]]`, as RT-DETR's and D-FINE's exports take their `orig_target_sizes`. */
function sizeTensor (spec: TensorSpec, width: number, height: number): WireTensor {
  const dims = [1, 2]
  if (spec.dtype === 'int64') return { dtype: 'int64', dims, data: BigInt64Array.from([BigInt(width), BigInt(height)]) }
  if (spec.dtype === 'int32') return { dtype: 'int32', dims, data: Int32Array.from([width, height]) }
  return { dtype: 'float32', dims, data: Float32Array.from([width, height]) }
}
