import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { nameText } from '../common/text.ts'
import { TOPICS } from './topics.ts'
import { labelName, MAX_FRAME_SIDE, MAX_ZONES } from './work.ts'

const pixel = z.int().min(0).max(MAX_FRAME_SIDE)
const label = z.string().min(1).max(64)

const DetectionSchema = z.object({
  label,
  score: z.number().min(0).max(1),
  /** `[x1, y1, x2, y2]` in the source frame's pixels: one box format everywhere. */
  box: z.tuple([pixel, pixel, pixel, pixel]).refine(([x1, y1, x2, y2]) => x2 >= x1 && y2 >= y1, 'must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1')
})
const boxSchema = DetectionSchema.shape.box

/** Detections one camera result carries at most; a frame with more shares its first ones (the store keeps all). */
export const MAX_SHARED_DETECTIONS = 64

/** What a camera's model found in a frame: results, never the frame. The sender is the gossip message's `from`. */
export const CameraResultMessageSchema = z.object({
  /** 2: boxes as corners in the frame's pixels (1 had them as x, y, width, height in the model's input). */
  v: z.literal(2),
  camera: nameText,
  at: z.int().nonnegative(),
  latencyMs: z.number().nonnegative(),
  detections: z.array(DetectionSchema).max(MAX_SHARED_DETECTIONS)
})

export type CameraResultMessage = z.infer<typeof CameraResultMessageSchema>

export const cameraResultCodec = jsonCodec(TOPICS.cameraResults, 16 * 1024, 2, CameraResultMessageSchema)

/** An event's id: when its object appeared (ms, base 36) and a random part, unique across the mesh. */
export const EVENT_ID = /^[0-9a-z]{1,12}-[0-9a-f]{8}$/

/**
 * An object a camera followed from when it appeared (`start`) to when it was last seen before it went (`end`,
 * null while it is in view): its label, its best score, its latest box, the zones it entered. Times in ms.
 */
/** The latest time an event may carry (the year 2100): a Date can show it, and retention by time can reach it. */
export const MAX_EVENT_TIME = 4_102_444_800_000
const eventTime = z.int().nonnegative().max(MAX_EVENT_TIME)

export const CameraEventSchema = z.object({
  id: z.string().regex(EVENT_ID, 'is not an event id'),
  camera: nameText,
  /** A label is an MQTT topic level where it came from: the same rule here. */
  label: labelName,
  score: z.number().min(0).max(1),
  box: boxSchema,
  zones: z.array(nameText).max(MAX_ZONES),
  start: eventTime,
  end: eventTime.nullable()
}).refine((e) => e.end === null || e.end >= e.start, { message: 'must not be before start', path: ['end'] })
export type CameraEvent = z.infer<typeof CameraEventSchema>

/** What happened to an event: it began, changed (a better score, a new zone, a while in view), or ended. */
export const EVENT_CHANGES = ['new', 'update', 'end'] as const

/** An event as a camera's node announces it to the mesh; the sender is the gossip message's `from`. */
export const CameraEventMessageSchema = z.object({
  v: z.literal(1),
  type: z.enum(EVENT_CHANGES),
  event: CameraEventSchema
})
export type CameraEventMessage = z.infer<typeof CameraEventMessageSchema>

export const cameraEventCodec = jsonCodec(TOPICS.cameraEvents, 4 * 1024, 1, CameraEventMessageSchema)
