import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { nameText } from '../common/text.ts'
import { TOPICS } from './topics.ts'

/** A frame's side at most, in pixels (8K is 7680). */
const MAX_FRAME_SIDE = 16_384
const pixel = z.int().min(0).max(MAX_FRAME_SIDE)

const DetectionSchema = z.object({
  label: z.string().min(1).max(64),
  score: z.number().min(0).max(1),
  /** `[x1, y1, x2, y2]` in the source frame's pixels: one box format everywhere. */
  box: z.tuple([pixel, pixel, pixel, pixel]).refine(([x1, y1, x2, y2]) => x2 >= x1 && y2 >= y1, 'must be [x1, y1, x2, y2] with x2 ≥ x1 and y2 ≥ y1')
})

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
