import { redactCredentials } from '../../../common/text.ts'
import type { CameraView } from '../../../media/cameras.ts'
import type { Member } from '../../membership/membership.ts'
import type { CameraListView } from '../views.ts'
import { viewerRoute } from './route.ts'
import type { Routes } from './route.ts'

export interface CameraSources {
  selfId: string
  name: string
  cameras: { list: () => CameraView[] }
  membership: { list: () => Member[] }
}

function sourceView (source: string | undefined): string | null {
  return source === undefined ? null : redactCredentials(source)
}

/** Cameras this node runs, with their figures, and cameras other members run, by where. */
export function cameraViews ({ selfId, name, cameras, membership }: CameraSources): CameraListView[] {
  const local: CameraListView[] = cameras.list().map((c) => ({
    camera: c.camera,
    node: name,
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
      remote.push({ camera: id, node: m.name, source: sourceView(w.source), model: w.model ?? null, state: 'remote', fpsIn: null, fpsInferred: null, skipped: null, latencyMs: null, detections: null, decoder: null, detector: null, outputErrors: null, error: null })
    }
  }
  return [...local, ...remote]
}

export function cameraRoutes (sources: CameraSources): Routes {
  return {
    'GET /api/v1/cameras': viewerRoute(() => cameraViews(sources))
  }
}
