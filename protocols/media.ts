import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { nameText } from '../common/text.ts'
import { TOPICS } from './topics.ts'

const DetectionSchema = z.object({
  label: z.string().min(1).max(64),
  score: z.number().min(0).max(1),
  box: z.object({ x: z.int().nonnegative(), y: z.int().nonnegative(), width: z.int().nonnegative(), height: z.int().nonnegative() })
})

/** Detections one camera result carries at most; a frame with more shares its first ones (the store keeps all). */
export const MAX_SHARED_DETECTIONS = 64

/** What a camera's model found in a frame: results, never the frame. The sender is the gossip message's `from`. */
export const CameraResultMessageSchema = z.object({
  v: z.literal(1),
  camera: nameText,
  at: z.int().nonnegative(),
  latencyMs: z.number().nonnegative(),
  detections: z.array(DetectionSchema).max(MAX_SHARED_DETECTIONS)
})

export type CameraResultMessage = z.infer<typeof CameraResultMessageSchema>

export const cameraResultCodec = jsonCodec(TOPICS.cameraResults, 16 * 1024, 1, CameraResultMessageSchema)
