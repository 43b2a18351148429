import t from 'tap'
import { DetectorError } from '../../common/errors.ts'
import { decodeYolo, MAX_CANDIDATES, MAX_OUTPUT_VALUES, nms } from '../../media/detector/decoders.ts'
import type { RawBox } from '../../media/detector/decoders.ts'
import { COCO91_LABELS, COCO_LABELS, LabelMap, metadataLabels } from '../../media/detector/labels.ts'
import { letterbox, planDetector } from '../../media/detector/plan.ts'
import type { ModelSignature } from '../../media/detector/plan.ts'
import { DetectorWireSchema } from '../../protocols/work.ts'
import type { Feeds, TensorSpec } from '../../runtime/tensors.ts'

const config = (c: unknown = {}) => DetectorWireSchema.parse(c)
const spec = (name: string, dtype: string, shape: Array<number | string>): TensorSpec => ({ name, dtype, shape })
const model = (inputs: readonly TensorSpec[], outputs: readonly TensorSpec[], metadata: Record<string, string> = {}): ModelSignature => ({ inputs, outputs, metadata })
const camera = { size: 320 }

const YOLOV8 = model([spec('images', 'float32', [1, 3, 640, 640])], [spec('output0', 'float32', [1, 84, 8400])])
const YOLOV5 = model([spec('images', 'float32', [1, 3, 'h', 'w'])], [spec('output0', 'float32', [1, 25200, 85])])
const SSD = model([spec('input_tensor', 'uint8', [1, 300, 300, 3])], ['detection_boxes:0', 'detection_classes:0', 'detection_scores:0', 'num_detections:0']
  .map((n, i) => spec(n, 'float32', [[1, 100, 4], [1, 100], [1, 100], [1]][i] as number[])))
const RTDETR = model([spec('images', 'float32', [1, 3, 640, 640]), spec('orig_target_sizes', 'int64', [1, 2])],
  [spec('labels', 'int64', [1, 300]), spec('boxes', 'float32', [1, 300, 4]), spec('scores', 'float32', [1, 300])])
const RFDETR = model([spec('input', 'float32', [1, 3, 560, 560])], [spec('dets', 'float32', [1, 300, 4]), spec('labels', 'float32', [1, 300, 91])])
const PPOCR = model([spec('x', 'float32', ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'])], [spec('sigmoid_0.tmp_0', 'float32', ['p2o.DynamicDimension.3', 1, 'p2o.DynamicDimension.4', 'p2o.DynamicDimension.5'])])

t.test('auto tells the standard exports apart by their inputs and outputs, and takes the frame\'s format from the signature', async (t) => {
  const plan = (m: ModelSignature) => {
    const p = planDetector(m, config(), camera)
    return { type: p.type, variant: p.variant, input: p.input }
  }
  t.same(plan(YOLOV8), { type: 'yolo', variant: 'yolov8', input: { name: 'images', width: 640, height: 640, dims: [1, 3, 640, 640], format: { layout: 'nchw', dtype: 'float32', scale: '0-1', channels: 'rgb' } } })
  t.same(plan(YOLOV5).input, { name: 'images', width: 320, height: 320, dims: [1, 3, 320, 320], format: { layout: 'nchw', dtype: 'float32', scale: '0-1', channels: 'rgb' } }, 'free dimensions take the camera\'s size')
  t.equal(plan(YOLOV5).variant, 'yolov5')
  t.same(plan(SSD), { type: 'ssd', variant: 'ssd', input: { name: 'input_tensor', width: 300, height: 300, dims: [1, 300, 300, 3], format: { layout: 'nhwc', dtype: 'uint8', scale: 'none', channels: 'rgb' } } })
  t.match(plan(RTDETR), { type: 'detr', variant: 'rt-detr', input: { name: 'images', width: 640 } })
  t.match(plan(RFDETR), { type: 'detr', variant: 'rf-detr', input: { name: 'input', width: 560 } })
  t.match(plan(PPOCR), { type: 'text', variant: 'db-text', input: { format: { scale: 'imagenet', channels: 'rgb' } } }, 'today\'s PP-OCR detector is still a text detector')
  t.equal(planDetector(PPOCR, config(), { size: 640, channels: 'bgr' }).input.format.channels, 'bgr', 'the camera\'s channels is a synonym of detector.input.channels')
  t.equal(planDetector(PPOCR, config({ input: { channels: 'bgr' } }), camera).input.format.channels, 'bgr')
  t.equal(planDetector(PPOCR, config(), camera).minScore, 0.3, 'a text map keeps its threshold')
  t.equal(planDetector(YOLOV8, config(), camera).minScore, 0.5)

  const sizes = planDetector(RTDETR, config(), camera).extraFeeds()
  t.same(Object.keys(sizes), ['orig_target_sizes'])
  t.same([sizes.orig_target_sizes?.dims, [...(sizes.orig_target_sizes?.data as BigInt64Array)]], [[1, 2], [640n, 640n]],
    'orig_target_sizes gets the input\'s size: boxes come back in input pixels and are mapped to the frame like any other')
  t.same(planDetector(YOLOV8, config(), camera).extraFeeds(), {})
})

t.test('a model or a setting the detector cannot work with is an error that says what to change', async (t) => {
  const fails = (m: ModelSignature, c: unknown, message: RegExp, why: string) => {
    t.throws(() => planDetector(m, config(c), camera), { name: 'DetectorError', code: 'ERR_DETECTOR', message }, why)
  }
  fails(model([spec('x', 'float32', [1, 10])], [spec('y', 'float32', [1, 2])]), {}, /no image input \(one of 4 dimensions\) among "x" \(float32 \[1, 10\]\)/, 'no image input')
  fails(model([spec('a', 'float32', [1, 3, 8, 8]), spec('b', 'float32', [1, 3, 8, 8])], YOLOV8.outputs), {}, /2 image inputs/, 'two image inputs')
  fails(model([spec('images', 'float32', [1, 3, 64, 64]), spec('state', 'float32', [2, 1, 128])], YOLOV8.outputs), {}, /input "state" \(float32 \[2, 1, 128\]\) is not one a camera can feed/, 'an input it cannot fill')
  fails(model([spec('images', 'float16', [1, 3, 64, 64])], YOLOV8.outputs), {}, /float32 or uint8 frames, not float16/, 'a float16 input')
  fails(model([spec('images', 'float32', [1, 1, 64, 64])], YOLOV8.outputs), {}, /no dimension of 3 colour channels/, 'a grey input')
  fails(model([spec('images', 'float32', [1, 3, 100_000, 64])], YOLOV8.outputs), {}, /asks for 64×100000 frames/, 'an absurd fixed size')
  fails(YOLOV8, { input: { layout: 'nhwc' } }, /detector.input.layout is "nhwc" but input "images" .* is nchw/, 'a layout that contradicts the signature')
  fails(YOLOV8, { input: { dtype: 'uint8' } }, /detector.input.dtype is "uint8" but input "images" .* is float32/, 'a dtype that contradicts it')
  fails(SSD, { input: { scale: '0-1' } }, /detector.input.scale is "0-1", but input "input_tensor" .* takes raw bytes/, 'a scale raw bytes cannot have')
  fails(YOLOV8, { type: 'ssd' }, /detector.type is "ssd", which needs detection_boxes, .*; the model's outputs are "output0" \(float32 \[1, 84, 8400\]\)/, 'a type the outputs do not fit')
  fails(model(YOLOV8.inputs, [spec('detection_out', 'float32', [1, 1, 100, 7])]), {}, /cannot tell the detector from the model's outputs \("detection_out"/, 'an OpenVINO SSD is not a text map')
  fails(model(YOLOV8.inputs, [spec('logits', 'float32', [1, 1000])]), {}, /cannot tell the detector from the model's outputs \("logits" \(float32 \[1, 1000\]\)\): set detector.type/, 'an image classifier')
  const wrong = planDetector(YOLOV8, config(), camera)
  t.throws(() => wrong.decode({}, { sourceWidth: 640, sourceHeight: 480 }), new DetectorError('the model gave no output "output0"'), 'outputs that are not what was declared')
  t.throws(() => wrong.decode({ output0: { dtype: 'float32', dims: [84, 8400], data: new Float32Array(84 * 8400) } }, { sourceWidth: 1, sourceHeight: 1 }),
    /output "output0" has shape \[84, 8400\], not 3 dimensions/)
  t.throws(() => wrong.decode({ output0: { dtype: 'float32', dims: [2, 84, 1], data: new Float32Array(168) } }, { sourceWidth: 1, sourceHeight: 1 }), /a batch of 2/)
  t.throws(() => wrong.decode({ output0: { dtype: 'float32', dims: [1, 4, 9], data: new Float32Array(36) } }, { sourceWidth: 1, sourceHeight: 1 }), /no class scores/)
  t.throws(() => wrong.decode({ output0: { dtype: 'float32', dims: [1, 4, MAX_OUTPUT_VALUES], data: new Float32Array(MAX_OUTPUT_VALUES + 1) } }, { sourceWidth: 1, sourceHeight: 1 }), /over 16777216/)
})

/** A YOLOv8 output of `boxes` (centre x, y, width, height, class, score) among `anchors`. */
function v8 (boxes: Array<[number, number, number, number, number, number]>, classes: number, anchors = boxes.length): Feeds {
  const data = new Float32Array((4 + classes) * anchors)
  boxes.forEach(([cx, cy, w, h, cls, score], j) => {
    data[j] = cx; data[anchors + j] = cy; data[2 * anchors + j] = w; data[3 * anchors + j] = h
    data[(4 + cls) * anchors + j] = score
  })
  return { output0: { dtype: 'float32', dims: [1, 4 + classes, anchors], data } }
}

t.test('YOLO: class-aware NMS, the letterbox undone, labels from the model\'s metadata', async (t) => {
  const m = model([spec('images', 'float32', [1, 3, 640, 640])], [spec('output0', 'float32', [1, 7, 'anchors'])], { names: "{0: 'cat', 1: \"dog's\", 2: 'box'}" })
  const plan = planDetector(m, config(), camera)
  const frame = { sourceWidth: 1280, sourceHeight: 720 } // letterboxed to 640×360 at y 140
  const found = plan.decode(v8([
    [320, 320, 100, 50, 2, 0.9],
    [322, 321, 100, 50, 2, 0.8], // the same object again: suppressed
    [322, 321, 100, 50, 0, 0.7], // another class in the same place: kept
    [100, 200, 10, 10, 1, 0.4], // under minScore
    [NaN, 200, 10, 10, 1, 0.99], // not a box
    [100, 200, 10, 10, 1, NaN]
  ], 3), frame)
  t.same(found, [
    { label: 'box', score: 0.9, box: [540, 310, 740, 410] },
    { label: 'cat', score: 0.7, box: [544, 312, 744, 412] }
  ])
  t.same(planDetector(m, config({ labelsAllowed: ['cat'] }), camera).decode(v8([[320, 320, 100, 50, 2, 0.9], [322, 321, 100, 50, 0, 0.7]], 3), frame).map((d) => d.label), ['cat'], 'labelsAllowed')
  t.same(planDetector(m, config({ labels: ['a', 'b', 'c', 'd'], labelOffset: 1 }), camera).decode(v8([[320, 320, 100, 50, 2, 0.9]], 3), frame).map((d) => d.label), ['d'], 'labels and labelOffset win over the metadata')
  t.same(planDetector(m, config({ minScore: 0.95 }), camera).decode(v8([[320, 320, 100, 50, 2, 0.9]], 3), frame), [], 'minScore')
  t.same(planDetector(m, config(), camera).decode(v8([[320, 320, 100, 50, 2, 7]], 3), frame)[0]?.score, 1, 'a score past 1 (a logit) is capped')
  const edge = planDetector(m, config(), camera).decode(v8([[5, 150, 40, 40, 2, 0.9]], 3), frame)
  t.same(edge[0]?.box, [0, 0, 50, 60], 'a box reaching into the letterbox is clipped to the frame')

  const v5 = planDetector(model(YOLOV5.inputs, [spec('output0', 'float32', [1, 'n', 7])]), config(), camera)
  const row = (cx: number, obj: number, cls: number, p: number) => [cx, 100, 20, 20, obj, ...[0, 1].map((c) => c === cls ? p : 0.1)]
  const data = Float32Array.from([...row(50, 0.9, 0, 0.9), ...row(200, 0.3, 1, 0.99), ...row(100, 0.9, 1, 0.5)])
  t.same(v5.decode({ output0: { dtype: 'float32', dims: [1, 3, 7], data } }, { sourceWidth: 320, sourceHeight: 320 }),
    [{ label: 'person', score: 0.81, box: [40, 90, 60, 110] }], 'v5: objectness times the class score; COCO names by default')
})

t.test('a model that marks every anchor costs a bounded decode, whatever order its scores come in', async (t) => {
  const anchors = 1_000_000
  /** Non-overlapping 3×3 boxes on a grid, one class, scores from `score(j)`. */
  const crafted = (score: (j: number) => number) => {
    const outputs = v8([], 1, anchors)
    const data = outputs.output0?.data as Float32Array
    for (let j = 0; j < anchors; j++) {
      data[j] = (j % 1000) * 4; data[anchors + j] = Math.floor(j / 1000) * 4; data[2 * anchors + j] = 3; data[3 * anchors + j] = 3
      data[4 * anchors + j] = score(j)
    }
    return outputs
  }
  // Rising scores: each is better than every one kept, the worst case of a bounded heap (and of a naive selection).
  for (const [why, score, least] of [
    ['rising scores', (j: number) => 0.5 + j / anchors / 2, 0.5 + (anchors - MAX_CANDIDATES) / anchors / 2],
    ['every anchor at 0.9', () => 0.9, 0.9]
  ] as const) {
    const outputs = crafted(score)
    const started = performance.now()
    const boxes = decodeYolo(outputs, 'output0', 0.5, 'v8', 4000, 4000)
    const ms = performance.now() - started
    t.equal(boxes.length, MAX_CANDIDATES, `${why}: the best MAX_CANDIDATES are kept`)
    t.ok(boxes.every((b) => b.score >= least - 1e-6), `${why}: and they are the best`)
    t.ok(ms < 1_500, `${why}: decoded in ${ms.toFixed(0)} ms`)
  }
})

t.test('NMS keeps the best box of each overlapping group, per class', async (t) => {
  const box = (classId: number, score: number, x: number): RawBox => ({ classId, score, x1: x, y1: 0, x2: x + 10, y2: 10 })
  t.same(nms([box(0, 0.5, 1), box(0, 0.9, 0), box(1, 0.8, 0), box(0, 0.7, 20)]), [box(0, 0.9, 0), box(1, 0.8, 0), box(0, 0.7, 20)])
})

t.test('SSD, RT-DETR and RF-DETR outputs', async (t) => {
  const frame = { sourceWidth: 300, sourceHeight: 300 }
  const ssd = planDetector(SSD, config(), camera).decode({
    'detection_boxes:0': { dtype: 'float32', dims: [1, 3, 4], data: Float32Array.from([0.1, 0.2, 0.5, 0.6, 0, 0, 1, 1, 0, 0, 1, 1]) },
    'detection_classes:0': { dtype: 'float32', dims: [1, 3], data: Float32Array.from([3, 1, 1]) },
    'detection_scores:0': { dtype: 'float32', dims: [1, 3], data: Float32Array.from([0.8, 0.3, 0.9]) },
    'num_detections:0': { dtype: 'float32', dims: [1], data: Float32Array.from([2]) }
  }, frame)
  t.same(ssd, [{ label: 'car', score: 0.8, box: [60, 30, 180, 150] }], 'normalized ymin, xmin, ymax, xmax; TF\'s one-based COCO ids; only num_detections of them')

  const detr = planDetector(RTDETR, config(), camera).decode({
    labels: { dtype: 'int64', dims: [1, 2], data: BigInt64Array.from([16n, 0n]) },
    boxes: { dtype: 'float32', dims: [1, 2, 4], data: Float32Array.from([64, 128, 320, 256, 0, 0, 10, 10]) },
    scores: { dtype: 'float32', dims: [1, 2], data: Float32Array.from([0.95, 0.2]) }
  }, { sourceWidth: 1280, sourceHeight: 1280 })
  t.same(detr, [{ label: 'dog', score: 0.95, box: [128, 256, 640, 512] }])

  const logits = new Float32Array(2 * 91).fill(-9)
  logits[18] = 3 // query 0: COCO category 18, a dog
  const rf = planDetector(RFDETR, config(), camera).decode({
    dets: { dtype: 'float32', dims: [1, 2, 4], data: Float32Array.from([0.5, 0.5, 0.25, 0.5, 0.1, 0.1, 0.1, 0.1]) },
    labels: { dtype: 'float32', dims: [1, 2, 91], data: logits }
  }, { sourceWidth: 560, sourceHeight: 560 })
  t.same(rf, [{ label: 'dog', score: 0.953, box: [210, 140, 350, 420] }], 'normalized centre boxes, sigmoid of the logits, COCO\'s 91 slots')
})

t.test('labels', async (t) => {
  t.equal(COCO_LABELS.length, 80)
  t.same([COCO91_LABELS.length, COCO91_LABELS[1], COCO91_LABELS[12], COCO91_LABELS[90]], [91, 'person', null, 'toothbrush'])
  t.same(metadataLabels({ names: "{0: 'person', 2: 'it\\'s'}" }), ['person', 'class 1', "it's"])
  t.equal(metadataLabels({}), undefined)
  t.equal(metadataLabels({ names: 'not a dict' }), undefined)
  t.equal(metadataLabels({ names: `{0: '${'x'.repeat(49)}'}` }), undefined, 'a name past 48 characters: none of the model\'s names are used')
  t.equal(metadataLabels({ names: "{0: 'a\u001b[2Jb'}" }), undefined, 'nor names with control characters')
  t.equal(metadataLabels({ names: "{99999: 'a'}" }), undefined, 'nor an absurd id')
  t.equal(new LabelMap(COCO91_LABELS, 0).name(12), 'class 12', 'an unused slot is called by its number')
  t.equal(new LabelMap(['a'], -1).name(1), 'a')
})

t.test('the letterbox FFmpeg applies, undone', async (t) => {
  const toSource = letterbox(640, 640, { sourceWidth: 1920, sourceHeight: 1080 }) // scaled to 640×360, padded 140 above
  t.same(toSource(0, 140), [0, 0])
  t.same(toSource(640, 500), [1920, 1080])
  t.same(toSource(320, 320), [960, 540])
  t.same(letterbox(320, 320, { sourceWidth: 240, sourceHeight: 320 })(40, 0), [0, 0], 'pillarboxed: 240×320 is padded 40 at the left')
  t.same(letterbox(320, 320, { sourceWidth: 0, sourceHeight: 0 })(400, -5), [320, 0], 'a frame of unknown size: input pixels, clipped')
})

t.test('the detector section of a camera, as config and wire read it', async (t) => {
  t.same(config(), { type: 'auto', labelOffset: 0, input: {} })
  t.throws(() => config({ type: 'yolo9000' }))
  t.throws(() => config({ labels: './labels.txt' }), 'a path never comes over the wire')
  t.throws(() => config({ labels: Array.from({ length: 129 }, (_, i) => `l${i}`) }), 'at most 128 inline names')
  t.throws(() => config({ labels: ['ok', 'bad\u0007'] }), 'no control characters in a label')
  t.throws(() => config({ minScore: 2 }))
  t.match(DetectorWireSchema.parse({ type: 'ssd', extra: 1 }), { type: 'ssd' }, 'on the wire a newer agent\'s fields are dropped')
})

t.test('the exports the review found misread: end-to-end, channels last, other tasks; the model\'s own class count decides', async (t) => {
  const names = (n: number) => ({ names: `{${Array.from({ length: n }, (_, i) => `${i}: 'c${i}'`).join(', ')}}` })
  const image = [spec('images', 'float32', [1, 3, 640, 640])]
  const variant = (shape: number[], metadata: Record<string, string> = {}) => planDetector(model(image, [spec('output0', 'float32', shape)], metadata), config(), camera).variant
  t.equal(variant([1, 300, 6]), 'yoloe2e', 'YOLOv10 / YOLO26 / nms=True: [1, 300, 6] with NMS inside')
  t.equal(variant([1, 300, 6], names(80)), 'yoloe2e')
  t.equal(variant([1, 300, 84], names(80)), 'yolov8t', 'Ultralytics RT-DETR: [1, 300, 4 + 80], channels last')
  t.equal(variant([1, 605, 525], names(601)), 'yolov8', 'v8 with more classes than anchors: the names say v8')
  t.equal(variant([1, 25200, 6], names(1)), 'yolov5', 'one class of v5 is not end-to-end')
  t.throws(() => variant([1, 56, 8400], { ...names(1), task: 'pose' }), /an Ultralytics "pose" model .* a camera reads "detect" models/)
  t.throws(() => variant([1, 90, 8400], names(80)), /output "output0" \(float32 \[1, 90, 8400\]\) fits no YOLO layout for the 80 classes the model names/)

  const frame = { sourceWidth: 640, sourceHeight: 640 }
  const e2e = planDetector(model(image, [spec('output0', 'float32', [1, 300, 6])]), config(), camera)
  const rows = Float32Array.from([10, 20, 110, 220, 0.9, 2, 10, 20, 110, 220, 0.95, 1.5, 0, 0, 5, 5, 0.3, 0, 1, 1, 9, 9, 0.99, 2 ** 40])
  t.same(e2e.decode({ output0: { dtype: 'float32', dims: [1, 4, 6], data: rows } }, frame), [{ label: 'car', score: 0.9, box: [10, 20, 110, 220] }],
    'corners and class as given, no NMS; a class of 1.5 or 2^40 is no detection')
  const t8 = planDetector(model(image, [spec('output0', 'float32', [1, 300, 84])], names(80)), config(), camera)
  const row = new Float32Array(2 * 84)
  row.set([0.5, 0.5, 0.25, 0.5], 0)
  row[4 + 7] = 0.8
  t.same(t8.decode({ output0: { dtype: 'float32', dims: [1, 2, 84], data: row } }, frame), [{ label: 'c7', score: 0.8, box: [240, 160, 400, 480] }], 'normalized centre boxes scaled to the input')

  const detr = planDetector(RTDETR, config(), camera)
  t.throws(() => detr.decode({
    labels: { dtype: 'int64', dims: [1, 1], data: BigInt64Array.from([1n]) },
    boxes: { dtype: 'float32', dims: [1, 1, 2], data: Float32Array.from([1, 2]) },
    scores: { dtype: 'float32', dims: [1, 1], data: Float32Array.from([0.9]) }
  }, frame), /output "boxes" has shape \[1, 1, 2\], not 4 numbers a box/)
  t.same(detr.decode({
    labels: { dtype: 'int64', dims: [1, 2], data: BigInt64Array.from([2n ** 62n + 1n, -1n]) },
    boxes: { dtype: 'float32', dims: [1, 2, 4], data: Float32Array.from([0, 0, 10, 10, 0, 0, 10, 10]) },
    scores: { dtype: 'float32', dims: [1, 2], data: Float32Array.from([0.9, 0.9]) }
  }, frame), [], 'class ids past any label list, or below 0: no detection')
  t.equal(planDetector(RFDETR, config(), camera).input.format.scale, 'imagenet', 'RF-DETR normalizes with ImageNet\'s statistics')
  t.throws(() => planDetector(model([...image, spec('im_shape', 'float32', [1, 2])], YOLOV8.outputs), config(), camera), /input "im_shape"/, 'PaddleDetection\'s [h, w] input is not fed as [w, h]')
})
