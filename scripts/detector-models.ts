/**
 * Small real ONNX detectors, built where they are used (the tests, the demo): no trained object detector can be
 * downloaded here. Each finds the bright rectangle in its frame (threshold, then the extent of what is over it)
 * and writes it out in the layout of a real export (YOLO v5/v8, TF OD API SSD, RT-DETR, RF-DETR), so the whole
 * pipeline runs on real inference: FFmpeg draws the rectangle, the model finds it, and a test checks the box
 * against what was drawn. Needs onnx-proto, a devDependency.
 */
import { writeFileSync } from 'node:fs'
import onnxProto from 'onnx-proto'
import type { onnx as Onnx } from 'onnx-proto'

const { onnx } = onnxProto
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
const UINT8 = onnx.TensorProto.DataType.UINT8

type Dim = number | string
type Attr = number | number[] | string

class Graph {
  readonly nodes: Onnx.INodeProto[] = []
  readonly initializers: Onnx.ITensorProto[] = []
  private n = 0

  op (type: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    const out = `${type.toLowerCase()}_${this.n++}`
    const attribute = Object.entries(attrs).map(([name, v]) => typeof v === 'string'
      ? { name, type: onnx.AttributeProto.AttributeType.STRING, s: Buffer.from(v) }
      : Array.isArray(v)
        ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
        : { name, type: onnx.AttributeProto.AttributeType.INT, i: v })
    this.nodes.push({ opType: type, input: inputs, output: [out], attribute })
    return out
  }

  floats (values: number[], dims: number[] = [values.length]): string {
    const name = `c_${this.n++}`
    this.initializers.push({ name, dataType: FLOAT, dims, floatData: values })
    return name
  }

  ints (values: number[], dims: number[] = [values.length]): string {
    const name = `c_${this.n++}`
    this.initializers.push({ name, dataType: INT64, dims, int64Data: values })
    return name
  }

  /** Gives `from` the name `to` (a graph output). */
  name (from: string, to: string): void {
    this.nodes.push({ opType: 'Identity', input: [from], output: [to] })
  }

  add (a: string, b: string): string { return this.op('Add', [a, b]) }
  sub (a: string, b: string): string { return this.op('Sub', [a, b]) }
  mul (a: string, b: string): string { return this.op('Mul', [a, b]) }
  concat (parts: string[], axis: number): string { return this.op('Concat', parts, { axis }) }
  reshape (x: string, shape: number[]): string { return this.op('Reshape', [x, this.ints(shape)]) }
  scalar (v: number): string { return this.floats([v], [1, 1]) }
}

/** A graph's input or output: a tensor of `elemType` (onnx.TensorProto.DataType), a dimension by size or by name. */
export function valueInfo (name: string, elemType: number, shape: Dim[]): Onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: shape.map((d) => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) } } } }
}

/** Writes `graph` as an ONNX model (IR 8, opset 13), with `metadata` as its key–value metadata. */
export function writeOnnxModel (file: string, graph: Onnx.IGraphProto, metadata: Record<string, string> = {}): void {
  writeFileSync(file, onnx.ModelProto.encode({
    irVersion: 8,
    producerName: 'noodle-tests',
    opsetImport: [{ domain: '', version: 13 }],
    metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    graph
  }).finish())
}

/** The bright rectangle's corners in input pixels (`x2`, `y2` exclusive) and whether there is one: each [1, 1]. */
function brightBox (g: Graph, gray: string, threshold: number, width: number, height: number): Record<'x1' | 'y1' | 'x2' | 'y2' | 'present', string> {
  const mask = g.op('Cast', [g.op('Greater', [gray, g.floats([threshold], [])])], { to: FLOAT })
  const extent = (axis: number, size: number): [string, string, string] => {
    // What is over the threshold along one side: [1, size].
    const any = g.op('ReduceMax', [mask], { axes: [axis], keepdims: 0 })
    const ramp = g.floats(Array.from({ length: size }, (_, i) => i + 1), [1, size])
    const back = g.floats(Array.from({ length: size }, (_, i) => size - i), [1, size])
    const end = g.op('ReduceMax', [g.mul(any, ramp)], { axes: [1], keepdims: 1 })
    const start = g.sub(g.scalar(size), g.op('ReduceMax', [g.mul(any, back)], { axes: [1], keepdims: 1 }))
    return [start, end, g.op('ReduceMax', [any], { axes: [1], keepdims: 1 })]
  }
  const [x1, x2, present] = extent(1, width)
  const [y1, y2] = extent(2, height)
  return { x1, y1, x2, y2, present }
}

export type DetectorLayout = 'yolov8' | 'yolov5' | 'ssd' | 'rt-detr' | 'rf-detr'

export interface DetectorModelOptions {
  layout: DetectorLayout
  /** The input's side; a string makes it a free dimension. */
  width: Dim
  height: Dim
  /** The side the graph's arithmetic assumes (the frame the camera will make): the free dimensions' value. */
  size?: number
  classes?: number
  /** The class the rectangle is reported as. */
  classId?: number
  /** Ultralytics-style metadata (`names`). */
  metadata?: Record<string, string>
}

/**
 * Writes the model to `file`. Beside the rectangle (score 0.9), YOLO layouts carry a second box of the same
 * class shifted by 2 px (score 0.8), which class-aware NMS must drop, and empty anchors.
 */
export function writeDetectorModel (file: string, options: DetectorModelOptions): void {
  const { layout, classes = 3, classId = 1, metadata = {} } = options
  const w = typeof options.width === 'number' ? options.width : options.size ?? 320
  const h = typeof options.height === 'number' ? options.height : options.size ?? 320
  const g = new Graph()
  const inputs: Onnx.IValueInfoProto[] = []
  const outputs: Onnx.IValueInfoProto[] = []
  let gray: string
  let threshold = 0.5
  if (layout === 'ssd') {
    inputs.push(valueInfo('input_tensor', UINT8, [1, options.height, options.width, 3]))
    gray = g.op('ReduceMean', [g.op('Cast', ['input_tensor'], { to: FLOAT })], { axes: [3], keepdims: 0 })
    threshold = 127.5
  } else {
    inputs.push(valueInfo('images', FLOAT, [1, 3, options.height, options.width]))
    gray = g.op('ReduceMean', ['images'], { axes: [1], keepdims: 0 })
  }
  const { x1, y1, x2, y2, present } = brightBox(g, gray, threshold, w, h)
  const score = (s: number): string => g.mul(present, g.scalar(s))
  const center = (): [string, string, string, string] => {
    const half = g.scalar(0.5)
    return [g.mul(g.add(x1, x2), half), g.mul(g.add(y1, y2), half), g.sub(x2, x1), g.sub(y2, y1)]
  }
  const anchors = 8

  if (layout === 'yolov8' || layout === 'yolov5') {
    const [cx, cy, bw, bh] = center()
    const zero = g.scalar(0)
    const oneHot = (s: string): string[] => Array.from({ length: classes }, (_, c) => c === classId ? s : zero)
    const shifted = g.scalar(2)
    const rows = [
      [cx, cy, bw, bh, ...(layout === 'yolov5' ? [present] : []), ...oneHot(score(0.9))],
      [g.add(cx, shifted), g.add(cy, shifted), bw, bh, ...(layout === 'yolov5' ? [present] : []), ...oneHot(score(0.8))]
    ]
    const width = rows[0]?.length as number
    const parts = rows.map((r) => g.concat(r, 1)) // each [1, width]
    parts.push(g.floats(new Array((anchors - rows.length) * width).fill(0), [anchors - rows.length, width]))
    const table = g.concat(parts.map((p) => g.reshape(p, [-1, width])), 0) // [anchors, width]
    const out = layout === 'yolov5' ? g.reshape(table, [1, anchors, width]) : g.reshape(g.op('Transpose', [table], { perm: [1, 0] }), [1, width, anchors])
    g.name(out, 'output0')
    outputs.push(valueInfo('output0', FLOAT, layout === 'yolov5' ? [1, anchors, width] : [1, width, anchors]))
  } else if (layout === 'ssd') {
    const box = g.concat([g.mul(y1, g.scalar(1 / h)), g.mul(x1, g.scalar(1 / w)), g.mul(y2, g.scalar(1 / h)), g.mul(x2, g.scalar(1 / w))], 1)
    g.name(g.concat([g.reshape(box, [1, 1, 4]), g.floats(new Array(3 * 4).fill(0), [1, 3, 4])], 1), 'detection_boxes')
    g.name(g.concat([g.reshape(g.scalar(classId), [1, 1]), g.floats([0, 0, 0], [1, 3])], 1), 'detection_classes')
    g.name(g.concat([score(0.9), g.floats([0, 0, 0], [1, 3])], 1), 'detection_scores')
    g.name(g.reshape(present, [1]), 'num_detections')
    outputs.push(valueInfo('detection_boxes', FLOAT, [1, 4, 4]), valueInfo('detection_classes', FLOAT, [1, 4]),
      valueInfo('detection_scores', FLOAT, [1, 4]), valueInfo('num_detections', FLOAT, [1]))
  } else if (layout === 'rt-detr') {
    // Boxes in the pixels of orig_target_sizes ([[width, height]]), as RT-DETR's and D-FINE's exports give them.
    inputs.push(valueInfo('orig_target_sizes', INT64, [1, 2]))
    const sizes = g.op('Cast', ['orig_target_sizes'], { to: FLOAT }) // [1, 2]
    const k = g.op('Div', [sizes, g.floats([w, h], [1, 2])])
    const kxy = g.concat([k, k], 1) // [1, 4]: sx, sy, sx, sy
    const box = g.mul(g.concat([x1, y1, x2, y2], 1), kxy)
    g.name(g.concat([g.reshape(box, [1, 1, 4]), g.floats(new Array(3 * 4).fill(0), [1, 3, 4])], 1), 'boxes')
    g.name(g.ints([classId, 0, 0, 0], [1, 4]), 'labels')
    g.name(g.concat([score(0.9), g.floats([0, 0, 0], [1, 3])], 1), 'scores')
    outputs.push(valueInfo('labels', INT64, [1, 4]), valueInfo('boxes', FLOAT, [1, 4, 4]), valueInfo('scores', FLOAT, [1, 4]))
  } else {
    // RF-DETR: normalized centre boxes, and class logits (sigmoid(4) ≈ 0.98).
    const [cx, cy, bw, bh] = center()
    const box = g.concat([g.mul(cx, g.scalar(1 / w)), g.mul(cy, g.scalar(1 / h)), g.mul(bw, g.scalar(1 / w)), g.mul(bh, g.scalar(1 / h))], 1)
    g.name(g.concat([g.reshape(box, [1, 1, 4]), g.floats(new Array(3 * 4).fill(0), [1, 3, 4])], 1), 'dets')
    const logit = g.sub(g.mul(present, g.scalar(14)), g.scalar(10)) // 4 with the rectangle, −10 without
    const row = Array.from({ length: classes }, (_, c) => c === classId ? logit : g.scalar(-10))
    g.name(g.concat([g.reshape(g.concat(row, 1), [1, 1, classes]), g.floats(new Array(3 * classes).fill(-10), [1, 3, classes])], 1), 'labels')
    outputs.push(valueInfo('dets', FLOAT, [1, 4, 4]), valueInfo('labels', FLOAT, [1, 4, classes]))
  }

  writeOnnxModel(file, { name: layout, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs }, metadata)
}

/**
 * A model shaped like a voice-activity detector (Silero VAD's inputs): `input [batch, samples]`, `state [2, batch,
 * 128]` and `sr` (int64, a scalar); it gives the mean of each row of `input` and the state back. `batch` is one
 * symbolic dimension across two inputs; `samples` is free and no rule sizes it.
 */
export function writeVoiceActivityModel (file: string): void {
  const g = new Graph()
  const mean = g.op('ReduceMean', ['input'], { axes: [1], keepdims: 1 })
  // The rate is read (so it is an input that must be fed), and weighs nothing.
  const rate = g.mul(g.op('Cast', ['sr'], { to: FLOAT }), g.floats([0], []))
  g.name(g.add(mean, rate), 'output')
  g.name(g.add('state', rate), 'stateN')
  writeOnnxModel(file, {
    name: 'vad',
    node: g.nodes,
    initializer: g.initializers,
    input: [valueInfo('input', FLOAT, ['batch', 'samples']), valueInfo('state', FLOAT, [2, 'batch', 128]), valueInfo('sr', INT64, [])],
    output: [valueInfo('output', FLOAT, ['batch', 1]), valueInfo('stateN', FLOAT, [2, 'batch', 128])]
  })
}
