import { z } from 'zod'
import { nameText } from '../common/text.ts'

export const WORK_KINDS = ['camera', 'model'] as const
export const ACCELERATOR_NEEDS = ['none', 'preferred', 'required'] as const

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
  /** Cameras: frames per second to infer, the model's square input size, and its channel order. */
  fps: z.number().min(0.1).max(120).default(5),
  size: z.int().min(32).max(4096).refine((n) => n % 32 === 0, 'must be a multiple of 32').default(640),
  channels: z.enum(['rgb', 'bgr']).default('rgb'),
  /** Cameras: decode on the box's video hardware where there is some ("auto"), or always in software ("none"). */
  hwaccel: z.enum(['auto', 'none']).default('auto')
}

/**
 * In a config file: an unknown key is a typo, and an error. Credentials in a source URL are refused: they would
 * travel in every beacon; they belong in `cameraCredentialsFile`, keyed by the camera's id.
 */
export const WorkItemSchema = z.strictObject(workItemShape).superRefine((item, ctx) => {
  if (item.source !== undefined && /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*@/.test(item.source)) {
    ctx.addIssue({ code: 'custom', path: ['source'], message: `carries credentials: put them in cameraCredentialsFile under "${item.id}" (they would travel in every beacon)` })
  }
})
/** On the wire: fields a newer agent adds are dropped, as everywhere in a message. */
export const WorkItemWireSchema = z.object(workItemShape)

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
