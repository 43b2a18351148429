import { readSmallFile } from '../common/files.ts'
import { z } from 'zod'
import { nameText } from '../common/text.ts'

export const WORK_KINDS = ['camera', 'model'] as const
export const ACCELERATOR_NEEDS = ['none', 'preferred', 'required'] as const

/** What a camera's model is: `auto` tells it from the model's inputs and outputs (media/detector/plan.ts). */
export const DETECTOR_TYPES = ['auto', 'yolo', 'ssd', 'detr', 'text'] as const
/** Label lists known by name: COCO's 80 classes, and the TF Object Detection API's 91 one-based slots. */
export const LABEL_SETS = ['coco', 'coco91'] as const
/** Names a work item lists inline at most: the list travels in the home's member record (16 KiB in all). */
export const MAX_INLINE_LABELS = 128
/** A label is also an MQTT topic level (`<baseTopic>/<name>/<camera>/<label>`): no wildcards, no levels. */
export const labelName = z.string().min(1).max(48).regex(/^[^\u0000-\u001f\u007f/+#]+$/, 'must hold no control characters, "/", "+" or "#"')

const detectorInputShape = {
  layout: z.enum(['nchw', 'nhwc']).optional(),
  dtype: z.enum(['float32', 'uint8']).optional(),
  /** How pixel values become the model's: x/255, ImageNet's mean and std over x/255, or x as it is. */
  scale: z.enum(['0-1', 'imagenet', 'none']).optional(),
  channels: z.enum(['rgb', 'bgr']).optional()
}

/** A frame's side at most, in pixels (8K is 7680). */
export const MAX_FRAME_SIDE = 16_384
const pixel = z.int().min(0).max(MAX_FRAME_SIDE)
/** Zones a camera names at most, and the corners of one. */
export const MAX_ZONES = 16
/** A camera's zones: polygons in the source frame's pixels, by name. An object is in a zone when its box's bottom centre is. */
export const ZonesSchema = z.record(nameText, z.array(z.tuple([pixel, pixel])).min(3).max(32))
  .refine((zones) => Object.keys(zones).length <= MAX_ZONES, `at most ${MAX_ZONES} zones`)
export type Zones = z.infer<typeof ZonesSchema>

/** Everything is optional: what the model's signature says wins, then these, then the type's defaults. */
function detectorShape<L extends z.ZodType<string | string[], unknown>> (labels: L, strict: boolean) {
  const object = strict ? z.strictObject : z.object
  return object({
    type: z.enum(DETECTOR_TYPES).default('auto'),
    labels: labels.optional(),
    /** A class id names labels[id + labelOffset] (Frigate's convention). */
    labelOffset: z.int().min(-1000).max(1000).default(0),
    /** Detections under this score are dropped; by default 0.5, and 0.3 for a text detector's map. */
    minScore: z.number().min(0).max(1).optional(),
    /** Only these labels are kept, when given. */
    labelsAllowed: z.array(labelName).min(1).max(MAX_INLINE_LABELS).optional(),
    input: object(detectorInputShape).default({})
  })
}
const labelList = z.array(labelName).min(1).max(MAX_INLINE_LABELS)
const inlineLabels = z.union([z.enum(LABEL_SETS), labelList])
/** A label file: one name a line. */
const MAX_LABEL_FILE_BYTES = 64 * 1024


/**
 * In a config file the labels may also be a file on the camera's home, one name a line: it is read when the config
 * is, into the inline list that travels in its place, so a path never crosses the mesh.
 */
const labelsText = z.string().transform((text, ctx): typeof LABEL_SETS[number] | string[] => {
  if ((LABEL_SETS as readonly string[]).includes(text)) return text as typeof LABEL_SETS[number]
  if (!/^\.{0,2}\//.test(text)) {
    ctx.addIssue({ code: 'custom', message: 'must be "coco", "coco91", a list of names, or a file path (starting with / or ./)' })
    return z.NEVER
  }
  let lines: string[]
  try {
    lines = new TextDecoder('utf-8', { fatal: true }).decode(readSmallFile(text, MAX_LABEL_FILE_BYTES)).split(/\r?\n/).map((line) => line.trim())
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `cannot read ${text}: ${(err as Error).message}` })
    return z.NEVER
  }
  if (lines.at(-1) === '') lines.pop()
  const parsed = labelList.safeParse(lines)
  if (!parsed.success) {
    const issue = parsed.error.issues[0] as z.core.$ZodIssue
    const line = issue.path[0]
    ctx.addIssue({ code: 'custom', message: `${text}${typeof line === 'number' ? ` (line ${line + 1})` : ''}: ${issue.code === 'too_big' ? `holds over ${MAX_INLINE_LABELS} names` : issue.message}` })
    return z.NEVER
  }
  return parsed.data
})
export const DetectorConfigSchema = detectorShape(z.union([labelsText, labelList]), true)
export const DetectorWireSchema = detectorShape(inlineLabels, false)
export type DetectorConfig = z.infer<typeof DetectorWireSchema>

/**
 * A piece of work a node can be asked to run: a camera stream (decode + detect) or a standalone model. It is
 * configured on the node where its data is (its "home") and may be moved by the coordinator unless pinned.
 */
const workItemShape = {
  id: nameText,
  kind: z.enum(WORK_KINDS),
  /** Where the frames come from (rtsp://…, a file, a device): a device path is pinned by nature. */
  source: z.string().min(1).max(500).optional(),
  /** The model to run: a registered model's id (or a unique prefix), or an ONNX file on the node, compiled at start. */
  model: z.string().min(1).max(4096).optional(),
  /** Must run at home (a USB camera, a local file). */
  pinned: z.boolean().default(false),
  /** Estimated cost: CPU in % of one core when run on the CPU, and memory. */
  cpuPct: z.number().min(0).max(6400).default(50),
  memMB: z.int().min(0).max(1_048_576).default(256),
  accelerator: z.enum(ACCELERATOR_NEEDS).default('preferred'),
  /** Cameras: frames per second to infer, and the side of the frame where the model's input leaves its size free. */
  fps: z.number().min(0.1).max(120).default(5),
  size: z.int().min(32).max(4096).refine((n) => n % 32 === 0, 'must be a multiple of 32').default(640),
  /** A synonym of detector.input.channels, from before there was a detector section. */
  channels: z.enum(['rgb', 'bgr']).optional(),
  /** Cameras: decode on the box's video hardware where there is some ("auto"), or always in software ("none"). */
  hwaccel: z.enum(['auto', 'none']).default('auto'),
  /** Cameras: named areas of the frame; an event lists those its object entered. */
  zones: ZonesSchema.optional(),
  /**
   * Cameras: run the detector only on frames where something moved (a cheap frame difference in the decode
   * thread), and on one frame every `refreshS` seconds whatever moved, so what is already in view is found and
   * what stands still stays followed.
   */
  motion: z.object({ enabled: z.boolean().default(true), refreshS: z.number().min(0.5).max(600).default(5) }).optional()
}

/** A camera's motion gating when its item says nothing: on, with a frame inferred at least every 5 s. */
export const DEFAULT_MOTION = { enabled: true, refreshS: 5 } as const

/**
 * In a config file: an unknown key is a typo, and an error. Credentials in a source URL are refused: they would
 * travel in every beacon; they belong in `cameraCredentialsFile`, keyed by the camera's id.
 */
export const WorkItemSchema = z.strictObject({ ...workItemShape, detector: DetectorConfigSchema.optional() }).superRefine((item, ctx) => {
  if (item.source !== undefined && /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*@/.test(item.source)) {
    ctx.addIssue({ code: 'custom', path: ['source'], message: `carries credentials: put them in cameraCredentialsFile under "${item.id}" (they would travel in every beacon)` })
  }
  const inner = item.detector?.input.channels
  if (item.channels !== undefined && inner !== undefined && inner !== item.channels) {
    ctx.addIssue({ code: 'custom', path: ['detector', 'input', 'channels'], message: `is "${inner}" but the camera's channels is "${item.channels}": give one of them` })
  }
})
/** On the wire: fields a newer agent adds are dropped, as everywhere in a message. */
export const WorkItemWireSchema = z.object({ ...workItemShape, detector: DetectorWireSchema.optional() })

export type WorkItem = z.infer<typeof WorkItemSchema>
/** As written in a config file: the defaulted fields may be left out. */
export type WorkItemInput = z.input<typeof WorkItemSchema>

/** Schemes a box may open for work homed elsewhere (`remoteWork.sources`); never file, pipe or device inputs. */
export const REMOTE_SCHEMES = ['rtsp', 'rtsps', 'rtmp', 'rtmps', 'http', 'https', 'srt'] as const
/** `lavfi:` (generators that read nothing), a scheme (`rtsp://`: any host), or a scheme and host (`rtsp://cam.lan:554`). */
export const remoteSourceEntry = z.string().max(200).regex(
  new RegExp(`^(lavfi:|(${REMOTE_SCHEMES.join('|')})://([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\])?(:\\d{1,5})?)$`),
  `must be "lavfi:", a scheme (${REMOTE_SCHEMES.map((s) => `${s}://`).join(', ')}), or a scheme and host such as rtsp://192.0.2.10`
)
export const DEFAULT_REMOTE_SOURCES = ['rtsp://', 'rtsps://', 'http://', 'https://', 'lavfi:']
/** The largest model a box takes for work homed elsewhere, unless its operator says otherwise. */
export const DEFAULT_REMOTE_MAX_MODEL_BYTES = 512 * 1024 ** 2
export const MAX_CREDENTIAL_CAMERAS = 32

/**
 * A box's `remoteWork` policy as its beacon carries it, and the ids of the cameras it has credentials for (ids
 * only: the credentials stay on the box). A beacon from an agent that predates it reads as the default policy.
 */
export const RemoteWorkAcceptsSchema = z.object({
  sources: z.array(remoteSourceEntry).max(16),
  maxModelBytes: z.int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  credentials: z.array(nameText).max(MAX_CREDENTIAL_CAMERAS).default([])
})
export type RemoteWorkAccepts = z.infer<typeof RemoteWorkAcceptsSchema>
export const DEFAULT_ACCEPTS: RemoteWorkAccepts = { sources: DEFAULT_REMOTE_SOURCES, maxModelBytes: DEFAULT_REMOTE_MAX_MODEL_BYTES, credentials: [] }
