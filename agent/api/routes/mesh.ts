import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import type { Member } from '../../membership/membership.ts'
import { linkResolver, nodeView } from '../views.ts'
import type { GossipView, NodeView } from '../views.ts'
import { viewerRoute } from './route.ts'
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
    'GET /api/v1/mesh/gossip': viewerRoute(() => gossipView(sources.counters))
  }
}
