import type { DetectorConfig } from '../../protocols/work.ts'

/** COCO's 80 classes, in the order YOLO, RT-DETR and D-FINE exports number them from 0. */
export const COCO_LABELS: readonly string[] = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
  'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
  'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
  'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
  'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
  'hair drier', 'toothbrush'
]

/**
 * COCO's category ids as the TF Object Detection API (and RF-DETR) number them: 1 to 90 with eleven unused
 * slots, which have no name. Index 0 is the background.
 */
export const COCO91_LABELS: ReadonlyArray<string | null> = (() => {
  const unused = new Set([12, 26, 29, 30, 45, 66, 68, 69, 71, 83])
  const slots: Array<string | null> = ['background']
  let next = 0
  for (let id = 1; id <= 90; id++) slots.push(unused.has(id) ? null : COCO_LABELS[next++] as string)
  return slots
})()

/** Label names a model's metadata may hold at most, and their length: the model file is not trusted. */
const MAX_METADATA_LABELS = 4096
const MAX_LABEL_LENGTH = 48

/**
 * The class names in a model's own metadata: Ultralytics writes `names` as a Python dict literal,
 * `{0: 'person', 1: 'bicycle', …}`. Anything else (or an absurd list) reads as none.
 */
export function metadataLabels (metadata: Readonly<Record<string, string>>): string[] | undefined {
  const names = metadata.names
  if (names === undefined || names.length > MAX_METADATA_LABELS * 64) return undefined
  const labels: string[] = []
  for (const m of names.matchAll(/(\d{1,5})\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")/g)) {
    const id = Number(m[1])
    const name = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1')
    if (id >= MAX_METADATA_LABELS || name === '' || name.length > MAX_LABEL_LENGTH || /[\u0000-\u001f\u007f/+#]/.test(name)) return undefined
    labels[id] = name
  }
  return labels.length === 0 ? undefined : Array.from(labels, (name) => name ?? null).map((name, id) => name ?? `class ${id}`)
}

/** What the camera's class ids are called, from its config, else the model's metadata, else the type's default. */
export class LabelMap {
  private readonly names: ReadonlyArray<string | null>
  private readonly offset: number

  constructor (names: ReadonlyArray<string | null>, offset: number) {
    this.names = names
    this.offset = offset
  }

  static of (config: Pick<DetectorConfig, 'labels' | 'labelOffset'>, fromModel: string[] | undefined, fallback: 'coco' | 'coco91'): LabelMap {
    const labels = config.labels ?? fromModel ?? fallback
    const names = labels === 'coco' ? COCO_LABELS : labels === 'coco91' ? COCO91_LABELS : labels
    return new LabelMap(names, config.labelOffset)
  }

  /** The name of class `id`; a class the list does not name is called by its number. */
  name (id: number): string {
    return this.names[id + this.offset] ?? `class ${id}`
  }

  get size (): number {
    return this.names.length
  }
}
