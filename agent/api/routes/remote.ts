import { z } from 'zod'
import { peerIdText } from '../../../common/text.ts'
import type { ViewAnswer, ViewRequest } from '../../../protocols/views.ts'
import { BinaryBody } from '../server.ts'
import { parseQuery } from './route.ts'
import type { Route } from './route.ts'

/** Asks a member for a view of its data (agent/mesh/view-exchange.ts). */
export interface RemoteViews {
  ask: (peerId: string, request: ViewRequest) => Promise<ViewAnswer>
}

/** `?node=<peer id>`: the member whose data to show; this box's when absent (or when it names this box). */
export const NodeQuerySchema = z.strictObject({ node: peerIdText.optional() })

/**
 * A read a viewer may ask of any member: `?node=` names it. `handle` answers for this box; another member answers
 * the same view (`view`) over the mesh, its JSON checked on the way (protocols/views.ts), its JPEG sent as one.
 */
export function nodeRoute (sources: { selfId: string, views: RemoteViews }, view: (params: Record<string, string> | undefined) => ViewRequest,
  handle: (request: ViewRequest) => unknown,
  /** What of another member's answer is known here better than it says (who answered: the stream's peer). */
  fromMember: (answer: unknown, peerId: string) => unknown = (answer) => answer): Route {
  return {
    access: 'viewer',
    takesQuery: true,
    handle: async (_req, _caller, query, params) => {
      const { node } = parseQuery(NodeQuerySchema, query ?? new URLSearchParams())
      // The path is checked before anything is asked of anyone.
      const request = view(params)
      if (node === undefined || node === sources.selfId) return await handle(request)
      return fromMember(answerBody(await sources.views.ask(node, request)), node)
    }
  }
}

/** A view's answer as the API sends it: the JSON as it is, a JPEG as image/jpeg. */
export function answerBody (answer: ViewAnswer): unknown {
  return 'jpeg' in answer ? new BinaryBody(answer.jpeg, 'image/jpeg') : answer.json
}
