import { z } from 'zod'

export const WORK_KINDS = ['camera', 'model'] as const
export const ACCELERATOR_NEEDS = ['none', 'preferred', 'required'] as const

/**
 * A piece of work a node can be asked to run: a camera stream (decode + detect) or a standalone model. It is
 * configured on the node where its data is (its "home") and may be moved by the coordinator unless pinned.
 */
const workItemShape = {
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit'),
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
  /** Cameras: frames per second to infer, the model's square input size, and its channel order. */
  fps: z.number().min(0.1).max(120).default(5),
  size: z.int().min(32).max(4096).refine((n) => n % 32 === 0, 'must be a multiple of 32').default(640),
  channels: z.enum(['rgb', 'bgr']).default('rgb'),
  /** Cameras: decode on the box's video hardware where there is some ("auto"), or always in software ("none"). */
  hwaccel: z.enum(['auto', 'none']).default('auto')
}

/** In a config file: an unknown key is a typo, and an error. */
export const WorkItemSchema = z.strictObject(workItemShape)
/** On the wire: fields a newer agent adds are dropped, as everywhere in a message. */
export const WorkItemWireSchema = z.object(workItemShape)

export type WorkItem = z.infer<typeof WorkItemSchema>
/** As written in a config file: the defaulted fields may be left out. */
export type WorkItemInput = z.input<typeof WorkItemSchema>
