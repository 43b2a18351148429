import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import type { Member } from '../../membership/membership.ts'
import { linkResolver, nodeView } from '../views.ts'
import type { GossipView, NodeView } from '../views.ts'
import { pathParam, viewerRoute } from './route.ts'
import { nodeRoute } from './remote.ts'
import type { RemoteViews } from './remote.ts'
import { peerIdText } from '../../../common/text.ts'
import type { ViewRequest } from '../../../protocols/views.ts'
import { healthSampleView } from '../../store/health-history.ts'
import type { HealthSample, HealthSampleView } from '../../store/health-history.ts'
import { UnknownNodeError } from '../../mesh/view-exchange.ts'
import type { Routes } from './route.ts'

/** The counters the gossip view reads: gossipsub's, and our validators' refusals. */
export interface GossipCounters {
  get: (name: string) => number
  sum: (name: string) => number
  series: (name: string) => Record<string, number>
}

export interface MeshSources {
  membership: { list: () => Member[] }
  election: { readonly coordinator: string | null }
  counters: GossipCounters
  /** Each member's health over the last day, a sample a minute. */
  healthHistory: { samples: (peerId: string) => HealthSample[] }
  selfId: string
  /** Another member's history of a member (`?node=`). */
  views: RemoteViews
}

/** A peer id in a path. */
const PeerId = peerIdText

/** A member's health over the last day, oldest first; 404 for a peer that is no member here. */
export function healthView ({ membership, healthHistory }: Pick<MeshSources, 'membership' | 'healthHistory'>, peerId: string): HealthSampleView[] {
  if (!membership.list().some((m) => m.peerId === peerId)) throw new UnknownNodeError(peerId)
  return healthHistory.samples(peerId).map(healthSampleView)
}

export function nodesView ({ membership, election }: Pick<MeshSources, 'membership' | 'election'>): NodeView[] {
  const members = membership.list()
  const ends = linkResolver(members.map((m) => m.peerId))
  return members.map((m) => nodeView(m, election.coordinator, ends))
}

export function gossipView (counters: GossipCounters): GossipView {
  const rejected: Record<string, number> = {}
  for (const [key, n] of Object.entries(counters.series(REJECTED_METRIC))) rejected[key] = n
  for (const [error, n] of Object.entries(counters.series('gossipsub_msg_received_invalid_total'))) {
    // Our validators' refusals are counted above; gossipsub's own (bad signature, seqno, from) come here.
    if (error !== 'reject') rejected[`envelope/${error}`] = n
  }
  return {
    sentBytes: counters.get('gossipsub_rpc_sent_bytes_total'),
    receivedBytes: counters.get('gossipsub_rpc_recv_bytes_total'),
    published: counters.sum('gossipsub_msg_publish_count_total'),
    rejected
  }
}

/** The members this node knows, and the gossip it has carried and refused. */
export function meshRoutes (sources: MeshSources): Routes {
  return {
    'GET /api/v1/mesh/nodes': viewerRoute(() => nodesView(sources)),
    'GET /api/v1/mesh/gossip': viewerRoute(() => gossipView(sources.counters)),
    'GET /api/v1/mesh/nodes/{peer}/health': nodeRoute(sources, (params) => ({ v: 1, view: 'health', peer: pathParam(PeerId, params, 'peer') }),
      (request) => healthView(sources, (request as Extract<ViewRequest, { view: 'health' }>).peer))
  }
}
