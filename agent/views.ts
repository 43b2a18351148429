import type { Member, MemberHealth } from './membership.ts'

/**
 * The bodies of the control API. The CLI's `--json` prints them unchanged, so scripts can use either; their
 * shape is a contract: add fields with care, never rename.
 */
export interface StatusView {
  peerId: string
  name: string
  version: string
  uptimeS: number
  role: string
  coordinator: string | null
  /** Members alive now, self included. */
  members: number
}

export interface NodeView {
  peerId: string
  name: string
  state: string
  role: string
  addrs: string[]
  lastSeen: string
  health: Pick<MemberHealth, 'cpuPct' | 'load1' | 'memUsedBytes' | 'memTotalBytes' | 'diskFreeBytes' | 'uptimeS'> | null
}

export function nodeView (member: Member): NodeView {
  const h = member.health
  return {
    peerId: member.peerId,
    name: member.name,
    state: member.state,
    role: member.role,
    addrs: member.addrs,
    lastSeen: new Date(member.lastSeen).toISOString(),
    health: h == null
      ? null
      : {
          cpuPct: h.cpuPct,
          load1: h.load1,
          memUsedBytes: h.memUsedBytes,
          memTotalBytes: h.memTotalBytes,
          diskFreeBytes: h.diskFreeBytes,
          uptimeS: h.uptimeS
        }
  }
}

/** Gossip traffic and refusals since the agent started (`GET /api/v1/mesh/gossip`). */
export interface GossipView {
  sentBytes: number
  receivedBytes: number
  published: number
  /**
   * Messages from peers refused, by "reason/topic" (member lists: "reason//noodle/member-sync/1.0.0"); gossipsub's
   * own refusals (signature, seqno, from) as "envelope/<error>".
   */
  rejected: Record<string, number>
}
