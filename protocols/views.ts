import { z } from 'zod'
import { describeIssue, versionedJson } from './codec.ts'
import type { Decoded } from './codec.ts'
import { nameText, peerIdText } from '../common/text.ts'
import { EVENT_ID } from './media.ts'
import { MODEL_ID } from './models.ts'

/**
 * Any member asks another for read-only views of its data (its sensors, a series, its ingest, its dead letter, its
 * models, its cameras and their latest JPEG, an event's snapshot, a member's health history), so that one page
 * shows the whole mesh from wherever it is opened (`?node=<peer id>` on the API). One stream per request: the asker
 * writes one length-prefixed JSON request; the member answers with a length-prefixed JSON header (`ok`, or the
 * error the API would answer with) and, when ok, one length-prefixed body: the view's JSON, or a JPEG. It grants
 * nothing: every view is one a viewer may read on the member's own API.
 */
export const VIEWS_PROTOCOL = '/noodle/views/1.0.0'

/** A request is a few names: anything past this is refused before it is read. */
export const MAX_VIEW_REQUEST_BYTES = 1024
/** A JPEG answer at most (a camera's latest frame, an event's snapshot: at most 1280 wide)… */
export const MAX_JPEG_BYTES = 1024 * 1024
/** …and a JSON one (a box's sensor list: about 20,000 sensor metrics). A view past it is answered ERR_ANSWER_TOO_LARGE. */
export const MAX_VIEW_JSON_BYTES = 4 * 1024 * 1024
/** The largest body frame either way. */
export const MAX_VIEW_BODY_BYTES = Math.max(MAX_JPEG_BYTES, MAX_VIEW_JSON_BYTES)

/** The resolutions of a sensor series (GET /api/v1/sensors/series). */
export const SERIES_RESOLUTIONS = ['minute', 'hour', 'day', 'month'] as const
/** A series holds at most this many points. */
export const MAX_SERIES_POINTS = 1_500
/** A member's health history holds at most a day of minutes, and the one under way. */
export const MAX_HEALTH_SAMPLES = 1_441

/** Sensor and metric names are MQTT text, 1–256 characters (protocols/sensor-payload.ts). */
const sensorText = z.string().min(1).max(256)
const at = z.int().min(0).max(8.64e15)
const v = z.literal(1)

export const ViewRequestSchema = z.discriminatedUnion('view', [
  z.object({ v, view: z.literal('sensors') }),
  z.object({ v, view: z.literal('series'), sensor: sensorText, metric: sensorText, res: z.enum(SERIES_RESOLUTIONS), since: at.optional(), until: at.optional() }),
  z.object({ v, view: z.literal('ingest') }),
  z.object({ v, view: z.literal('dead-letters') }),
  z.object({ v, view: z.literal('models') }),
  z.object({ v, view: z.literal('cameras') }),
  z.object({ v, view: z.literal('latest-jpeg'), camera: nameText }),
  z.object({ v, view: z.literal('snapshot-jpeg'), event: z.string().max(32).regex(EVENT_ID, 'is not an event id') }),
  z.object({ v, view: z.literal('health'), peer: peerIdText })
])

export type ViewRequest = z.infer<typeof ViewRequestSchema>
export type ViewName = ViewRequest['view']

/** The statuses a member may answer a view with: what its own API would, for a request it could not serve. */
export const VIEW_ERROR_STATUSES = [400, 403, 404, 409, 413, 429, 501, 503] as const
/**
 * …and the codes: those its views can fail with. A fixed list, since the asker's API counts its refusals by code
 * (`noodle_api_refused_total{reason}`): a member making codes up would grow that metric without end.
 */
export const VIEW_ERROR_CODES = [
  'ERR_BAD_REQUEST', 'ERR_UNKNOWN_EVENT', 'ERR_NO_SNAPSHOT', 'ERR_CAMERA_NOT_HERE', 'ERR_SNAPSHOT_UNAVAILABLE', 'ERR_UNKNOWN_NODE',
  'ERR_MODULE_UNAVAILABLE', 'ERR_BUSY', 'ERR_ANSWER_TOO_LARGE', 'ERR_VIEW_FAILED', 'ERR_VIEWS_NOT_SHARED'
] as const

export const ViewHeaderSchema = z.discriminatedUnion('ok', [
  z.object({ v, ok: z.literal(true) }),
  z.object({
    v,
    ok: z.literal(false),
    status: z.union(VIEW_ERROR_STATUSES.map((s) => z.literal(s))),
    code: z.enum(VIEW_ERROR_CODES),
    message: z.string().max(300)
  })
])

export type ViewHeader = z.infer<typeof ViewHeaderSchema>

export const viewRequestCodec = versionedJson(MAX_VIEW_REQUEST_BYTES, 1, ViewRequestSchema)
export const viewHeaderCodec = versionedJson(512, 1, ViewHeaderSchema)

// The bodies, as the member's own API gives them: an answer is checked against them before it is passed on, and
// what they do not name is dropped (zod's objects strip unknown keys).
const iso = z.iso.datetime()
const count = z.int().nonnegative()
const figure = z.number().nonnegative()
const text = (max: number) => z.string().max(max)

const TensorSpec = z.object({ name: text(256), dtype: text(32), shape: z.array(z.union([z.int(), text(64)])).max(16) })

export const VIEW_BODIES = {
  sensors: z.array(z.object({ sensor: sensorText, metric: sensorText, value: z.number(), ts: iso, lastSeen: iso, count, ratePerS: figure })).max(100_000),
  series: z.object({
    sensor: sensorText,
    metric: sensorText,
    res: z.enum(SERIES_RESOLUTIONS),
    points: z.array(z.object({ at: iso, count, min: z.number(), max: z.number(), mean: z.number(), last: z.number() })).max(MAX_SERIES_POINTS)
  }),
  ingest: z.object({
    received: count,
    stored: count,
    rejected: count,
    deadLetter: count,
    connected: z.boolean(),
    broker: text(2048).nullable(),
    embeddedBroker: z.object({ clients: count, refused: z.record(z.string().regex(/^[A-Za-z_-]{1,40}$/), count) }).nullable()
  }),
  'dead-letters': z.array(z.object({ at: iso, topic: text(1024), reason: text(64), detail: text(1024), size: count, payload: text(1024) })).max(100),
  models: z.array(z.object({
    id: z.string().regex(MODEL_ID),
    name: text(255),
    sizeBytes: count,
    opset: count,
    inputs: z.array(TensorSpec).max(64),
    outputs: z.array(TensorSpec).max(64),
    providers: z.array(z.object({ name: text(32), threads: count, runs: count, p50Ms: figure, p99Ms: figure })).max(16),
    createdAt: iso,
    origin: text(16)
  })).max(1024),
  cameras: z.array(z.object({
    camera: nameText,
    node: nameText,
    source: text(4096).nullable(),
    model: text(4096).nullable(),
    state: text(32),
    fpsIn: figure.nullable(),
    fpsInferred: figure.nullable(),
    skipped: count.nullable(),
    latencyMs: figure.nullable(),
    detections: count.nullable(),
    decoder: text(32).nullable(),
    detector: text(32).nullable(),
    outputErrors: count.nullable(),
    motionFrames: count.nullable(),
    stillFrames: count.nullable(),
    error: text(2000).nullable()
  })).max(256),
  health: z.array(z.object({
    at: iso,
    cpuPct: z.number().min(0).max(100),
    load1: figure,
    memUsedBytes: count,
    memTotalBytes: count,
    diskFreeBytes: count,
    tempC: z.number().min(-100).max(250).nullable()
  })).max(MAX_HEALTH_SAMPLES)
} as const satisfies Record<Exclude<ViewName, 'latest-jpeg' | 'snapshot-jpeg'>, z.ZodType>

export type JsonViewName = keyof typeof VIEW_BODIES
export type ViewBody<N extends JsonViewName> = z.infer<typeof VIEW_BODIES[N]>

/** A view's answer: JSON of its body's shape, or a JPEG. */
export type ViewAnswer = { json: unknown } | { jpeg: Uint8Array }

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Whether a view is answered with a JPEG. */
export function isJpegView (view: ViewName): view is 'latest-jpeg' | 'snapshot-jpeg' {
  return view === 'latest-jpeg' || view === 'snapshot-jpeg'
}

/**
 * A member's answer to `view`, checked as every message from a peer is: size, then the bytes (a JPEG's start of
 * image, or UTF-8 JSON), then the body's schema.
 */
export function decodeViewBody (view: ViewName, bytes: Uint8Array): Decoded<ViewAnswer> {
  if (isJpegView(view)) {
    if (bytes.byteLength > MAX_JPEG_BYTES) return { ok: false, reason: 'oversized', detail: `${bytes.byteLength} bytes exceeds ${MAX_JPEG_BYTES}` }
    // JPEG's start of image and the marker after it: nothing else is passed on as image/jpeg.
    if (bytes.byteLength < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8 || bytes[2] !== 0xff) return { ok: false, reason: 'malformed', detail: 'not a JPEG' }
    return { ok: true, value: { jpeg: bytes } }
  }
  if (bytes.byteLength > MAX_VIEW_JSON_BYTES) return { ok: false, reason: 'oversized', detail: `${bytes.byteLength} bytes exceeds ${MAX_VIEW_JSON_BYTES}` }
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(bytes))
  } catch (err) {
    return { ok: false, reason: 'malformed', detail: (err as Error).message }
  }
  const parsed = VIEW_BODIES[view].safeParse(json)
  if (!parsed.success) return { ok: false, reason: 'invalid', detail: describeIssue(parsed.error) }
  return { ok: true, value: { json: parsed.data } }
}
