import { z } from 'zod'
import { NAME_PATTERN, NAME_RULE, nameText, redactCredentials } from '../../../common/text.ts'
import type { EventQuery, EventView } from '../../../media/camera-events.ts'
import type { CameraView } from '../../../media/cameras.ts'
import { NoSnapshotError } from '../../../media/snapshots.ts'
import type { CameraSnapshots } from '../../../media/snapshots.ts'
import { EVENT_ID } from '../../../protocols/media.ts'
import { BinaryBody } from '../server.ts'
import type { Member } from '../../membership/membership.ts'
import type { CameraListView } from '../views.ts'
import { pathParam, viewerQueryRoute } from './route.ts'
import { answerBody, nodeRoute } from './remote.ts'
import type { RemoteViews } from './remote.ts'
import type { ViewRequest } from '../../../protocols/views.ts'
import type { Routes } from './route.ts'

export interface CameraSources {
  selfId: string
  name: string
  cameras: { list: () => CameraView[] }
  cameraEvents: { list: (query: EventQuery) => EventView[] }
  membership: { list: () => Member[] }
  /** Event snapshots and each camera's latest frame, as JPEG. */
  snapshots: Pick<CameraSnapshots, 'eventJpeg' | 'latestJpeg'>
  /** Another member's cameras, frames and snapshots (`?node=`). */
  views: RemoteViews
}

/** Events listed at most by one request. */
export const MAX_EVENTS_LISTED = 1_000

/** Whether a text's `YYYY-MM-DD` is a day of the calendar (Date.parse reads 2026-02-30 as 2 March). */
function realDate (text: string): boolean {
  const [y, m, d] = text.slice(0, 10).split('-').map(Number) as [number, number, number]
  const day = new Date(Date.UTC(y, m - 1, d))
  return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d
}

/** A time in a query: ISO-8601 (`2026-11-30T10:00:00Z`, or a day) or ms since the epoch. */
export const queryTime = z.string().max(40).transform((text, ctx) => {
  const at = /^\d{1,15}$/.test(text) ? Number(text) : /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text) && realDate(text) ? Date.parse(text) : NaN
  if (Number.isNaN(at)) {
    ctx.addIssue({ code: 'custom', message: 'must be an ISO-8601 time (2026-11-30T10:00:00Z) or ms since the epoch' })
    return z.NEVER
  }
  return at
})

/** `GET /api/v1/events`' query parameters. */
export const EventQuerySchema = z.strictObject({
  camera: nameText.optional(),
  label: z.string().min(1).max(64).optional(),
  zone: nameText.optional(),
  since: queryTime.optional(),
  until: queryTime.optional(),
  limit: z.string().regex(/^\d{1,4}$/, 'must be a whole number').transform(Number).pipe(z.int().min(1).max(MAX_EVENTS_LISTED)).optional()
})

/** An event id in a path: as `noodle events` lists them (the length checked before the pattern). */
const EventId = z.string().max(32, 'is not an event id').regex(EVENT_ID, 'is not an event id (as noodle events lists them)')
/** A camera id in a path: a work id. */
const CameraId = z.string().max(63, NAME_RULE).regex(NAME_PATTERN, NAME_RULE)

function sourceView (source: string | undefined): string | null {
  return source === undefined ? null : redactCredentials(source)
}

/** Cameras this node runs, with their figures, and cameras other members run, by where. */
export function cameraViews ({ selfId, name, cameras, membership }: Pick<CameraSources, 'selfId' | 'name' | 'cameras' | 'membership'>): CameraListView[] {
  const local: CameraListView[] = cameras.list().map((c) => ({
    camera: c.camera,
    node: name,
    peerId: selfId,
    source: sourceView(c.source),
    model: c.model ?? null,
    state: c.state,
    fpsIn: c.fpsIn ?? 0,
    fpsInferred: c.fpsInferred ?? 0,
    skipped: c.skipped ?? 0,
    latencyMs: c.latencyMs ?? null,
    detections: c.detections ?? null,
    decoder: c.decoder ?? null,
    detector: c.detector ?? null,
    outputErrors: c.outputErrors ?? null,
    motionFrames: c.motionFrames ?? null,
    stillFrames: c.stillFrames ?? null,
    error: c.error
  }))
  const seen = new Set(local.map((c) => c.camera))
  // A camera runs at home or wherever the coordinator moved it: its item is in its home's beacon.
  const members = membership.list()
  const cameraWork = new Map(members.flatMap((m) => m.health?.work ?? []).filter((w) => w.kind === 'camera').map((w) => [w.id, w]))
  const remote: CameraListView[] = []
  for (const m of members) {
    if (m.peerId === selfId || m.health == null || m.state !== 'alive') continue
    for (const id of m.health.running) {
      const w = cameraWork.get(id)
      if (w === undefined || seen.has(id)) continue
      seen.add(id)
      remote.push({ camera: id, node: m.name, peerId: m.peerId, source: sourceView(w.source), model: w.model ?? null, state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, motionFrames: null, stillFrames: null, error: null })
    }
  }
  return [...local, ...remote]
}

/** This box's answer to a view of its cameras: their figures (only those it runs), a latest frame, an event's snapshot. */
export async function cameraView (sources: CameraSources, request: Extract<ViewRequest, { view: 'cameras' | 'latest-jpeg' | 'snapshot-jpeg' }>): Promise<unknown> {
  switch (request.view) {
    case 'cameras': return cameraViews(sources).filter((c) => c.state !== 'remote')
    case 'latest-jpeg': return new BinaryBody(await sources.snapshots.latestJpeg(request.camera), 'image/jpeg')
    case 'snapshot-jpeg': return new BinaryBody(await sources.snapshots.eventJpeg(request.event), 'image/jpeg')
  }
}

export function cameraRoutes (sources: CameraSources): Routes {
  return {
    // Here: every camera of the mesh, figures for ours; another member's (?node=): the cameras it runs, with figures.
    // Another member's cameras are the peer's that answered, whatever peer id its answer names.
    'GET /api/v1/cameras': nodeRoute(sources, () => ({ v: 1, view: 'cameras' }), () => cameraViews(sources),
      (answer, peerId) => (answer as CameraListView[]).map((c) => ({ ...c, peerId }))),
    'GET /api/v1/events': viewerQueryRoute(EventQuerySchema, (query) => sources.cameraEvents.list(query)),
    // An event another member announced: its snapshot is asked of that member (by the peer id its announcement
    // came signed with, never by a name), here only, never when serving a member's view (no box relays for another).
    'GET /api/v1/events/{id}/snapshot.jpg': nodeRoute(sources, (params) => ({ v: 1, view: 'snapshot-jpeg', event: pathParam(EventId, params, 'id') }),
      async (request) => {
        try {
          return await cameraView(sources, request as Extract<ViewRequest, { view: 'snapshot-jpeg' }>)
        } catch (err) {
          if (!(err instanceof NoSnapshotError) || err.peer === undefined || err.peer === sources.selfId) throw err
          return answerBody(await sources.views.ask(err.peer, request))
        }
      }),
    'GET /api/v1/cameras/{id}/latest.jpg': nodeRoute(sources, (params) => ({ v: 1, view: 'latest-jpeg', camera: pathParam(CameraId, params, 'id') }),
      async (request) => await cameraView(sources, request as Extract<ViewRequest, { view: 'latest-jpeg' }>))
  }
}
