import type { Member } from '../../membership/membership.ts'
import { decisionView } from '../views.ts'
import type { DecisionView } from '../views.ts'
import { operatorRoute, viewerRoute } from './route.ts'
import type { Routes } from './route.ts'

// ahr: the system design's name for the optimizer, the coordinator's placement pass that issues decisions
// (the repository records no expansion of the letters); the paths keep it.

/** A decision as stored: what decisionView takes. */
type DecisionRecord = Parameters<typeof decisionView>[0]

export interface CoordinationSources {
  decisions: { decisions: () => DecisionRecord[] }
  membership: { list: () => Member[] }
  /** A fresh placement pass by the coordinator, from any node (forwarded to it). */
  optimizer: { optimize: () => Promise<unknown> }
}

/** Decisions issued or received here, with their targets' names where this node knows them. */
export function decisionsView ({ decisions, membership }: Pick<CoordinationSources, 'decisions' | 'membership'>): DecisionView[] {
  const names = new Map(membership.list().map((m) => [m.peerId, m.name]))
  return decisions.decisions().map((d) => decisionView(d, names))
}

/** The optimizer: the decisions it made, and a pass on demand. */
export function coordinationRoutes (sources: CoordinationSources): Routes {
  return {
    'GET /api/v1/ahr/decisions': viewerRoute(() => decisionsView(sources)),
    'POST /api/v1/ahr/optimize': operatorRoute(async () => await sources.optimizer.optimize())
  }
}
