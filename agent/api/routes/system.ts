import { PROMETHEUS_CONTENT_TYPE } from '../../metrics/prometheus.ts'
import { TextBody } from '../server.ts'
import type { StatusView } from '../views.ts'
import { viewerRoute } from './route.ts'
import type { Routes } from './route.ts'

/** Who coordinates, as this node's election knows it. */
export interface ElectionState {
  readonly coordinator: string | null
  readonly isCoordinator: boolean
  readonly term: number
}

/** What `GET /api/v1/system/status` reports, read when asked. */
export interface StatusSources {
  selfId: string
  name: string
  version: string
  startedAt: number
  election: ElectionState
  membership: { get: (peerId: string) => { name: string } | undefined, count: (state: 'alive') => number }
  lag: { readonly ms: number }
  disk: { view: () => StatusView['disk'] }
  /** The connections this agent keeps to members: 0, a full mesh (mesh.connections). */
  meshConnections: number
}

export function statusView (s: StatusSources, now = Date.now()): StatusView {
  const coordinator = s.election.coordinator
  return {
    peerId: s.selfId,
    name: s.name,
    version: s.version,
    uptimeS: Math.round((now - s.startedAt) / 100) / 10,
    role: s.election.isCoordinator ? 'coordinator' : 'member',
    coordinator,
    coordinatorName: coordinator == null ? null : s.membership.get(coordinator)?.name ?? null,
    term: s.election.term,
    members: s.membership.count('alive'),
    loopLagMs: s.lag.ms,
    meshConnections: s.meshConnections,
    disk: s.disk.view()
  }
}

/** One line for `systemctl status`. */
export function statusLine (s: StatusView): string {
  return `${s.members} member(s) alive; ${s.role}; coordinator ${s.coordinatorName ?? s.coordinator ?? 'none yet'}, term ${s.term}`
}

export interface SystemSources extends StatusSources {
  /** Every metric, in Prometheus's text format. */
  prometheus: { render: () => Promise<string> }
}

/** The node itself: its status, and its metrics. */
export function systemRoutes (sources: SystemSources): Routes {
  return {
    'GET /api/v1/system/status': viewerRoute(() => statusView(sources)),
    'GET /metrics': viewerRoute(async () => new TextBody(await sources.prometheus.render(), PROMETHEUS_CONTENT_TYPE))
  }
}
