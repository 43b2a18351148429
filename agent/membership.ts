import { EventEmitter } from 'node:events'
import type { HealthBeacon, Role } from '../protocols/health.ts'
import type { SystemEvent } from '../protocols/events.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** The health figures kept per member (the beacon's, less its bookkeeping). */
export interface MemberHealth {
  cpuPct: number
  load1: number
  memUsedBytes: number
  memTotalBytes: number
  diskFreeBytes: number
  uptimeS: number
  tempC: number | null
  accelerators: string[]
  version: string
}

export interface Member {
  peerId: string
  name: string
  state: MemberState
  role: Role
  addrs: string[]
  /** When we last heard from it (ms since the epoch). */
  lastSeen: number
  health: MemberHealth | null
}

export interface MemberChange {
  member: Member
  from: MemberState | null
  to: MemberState
  reason: string
}

export interface MembershipOptions {
  suspectAfterMs: number
  deadAfterMs: number
  reapAfterMs: number
}

interface Tracked {
  member: Member
  /** Which run of the member's agent we follow, and its last beacon's counter: they order beacons. */
  startedAt: number
  seq: number
  /** Start of the current silence: the last beacon, or our own start for members restored from the store. */
  silentSince: number
}

export interface MembershipEvents {
  change: [MemberChange]
  reap: [Member]
}

export function healthOf (beacon: HealthBeacon): MemberHealth {
  const { cpuPct, load1, memUsedBytes, memTotalBytes, diskFreeBytes, uptimeS, tempC, accelerators, version } = beacon
  return { cpuPct, load1, memUsedBytes, memTotalBytes, diskFreeBytes, uptimeS, tempC, accelerators, version }
}

/**
 * Who is in the mesh and in what state, from health beacons, leave events and connection events:
 *
 *   alive ──(silent suspectAfterMs, or every connection to it closed)──▶ suspect ──(silent deadAfterMs)──▶ dead
 *     ▲                                                                                                      │
 *     └────────────────────────────────── any newer beacon ◀────────────────────────────────────────────────┘
 *   any state ──(its own signed leave event)──▶ left;  dead/left ──(reapAfterMs)──▶ forgotten
 *
 * Time is passed in (`now`), so the whole table is testable without a clock or a network.
 */
export class Membership extends EventEmitter<MembershipEvents> {
  private readonly members = new Map<string, Tracked>()
  private readonly dirty = new Set<string>()
  private readonly options: MembershipOptions
  private readonly selfId: string
  private readonly now: () => number

  constructor (components: { self: Member, options: MembershipOptions, now?: () => number }) {
    super()
    this.options = components.options
    this.now = components.now ?? Date.now
    this.selfId = components.self.peerId
    this.members.set(this.selfId, { member: { ...components.self, state: 'alive' }, startedAt: 0, seq: 0, silentSince: this.now() })
  }

  get self (): Member {
    return (this.members.get(this.selfId) as Tracked).member
  }

  /**
   * Members remembered from an earlier run. Nothing vouches for them yet, so those that were alive come back
   * suspect; their silence is timed from now, so a restart alone declares nobody dead.
   */
  restore (members: Iterable<Member>): void {
    const now = this.now()
    for (const member of members) {
      if (member.peerId === this.selfId || this.members.has(member.peerId)) continue
      const state = member.state === 'alive' ? 'suspect' : member.state
      this.members.set(member.peerId, { member: { ...member, state }, startedAt: 0, seq: 0, silentSince: now })
    }
  }

  updateSelf (fields: Partial<Omit<Member, 'peerId' | 'state'>>): void {
    const self = this.members.get(this.selfId) as Tracked
    Object.assign(self.member, fields, { lastSeen: this.now() })
    this.dirty.add(this.selfId)
  }

  /**
   * A beacon passed validation. Returns true when it is news: a member we did not know, a restarted one, or one
   * coming back from suspect/dead/left (the caller answers with its own beacon so the newcomer learns of it at once).
   */
  observeBeacon (peerId: string, beacon: HealthBeacon): boolean {
    if (peerId === this.selfId) return false
    const now = this.now()
    const tracked = this.members.get(peerId)
    if (tracked != null) {
      const older = beacon.startedAt < tracked.startedAt ||
        (beacon.startedAt === tracked.startedAt && beacon.seq <= tracked.seq)
      // A late beacon from before a leave must not resurrect the member: only a new run can.
      if (older || (tracked.member.state === 'left' && beacon.startedAt === tracked.startedAt)) return false
    }
    const member: Member = {
      peerId,
      name: beacon.name,
      state: tracked?.member.state ?? 'alive',
      role: beacon.role,
      addrs: beacon.addrs.length > 0 ? beacon.addrs : (tracked?.member.addrs ?? []),
      lastSeen: now,
      health: healthOf(beacon)
    }
    const news = tracked == null || tracked.startedAt !== beacon.startedAt || tracked.member.state !== 'alive'
    this.members.set(peerId, { member, startedAt: beacon.startedAt, seq: beacon.seq, silentSince: now })
    this.dirty.add(peerId)
    if (tracked == null) {
      member.state = 'alive'
      this.emit('change', { member, from: null, to: 'alive', reason: 'first beacon' })
    } else if (tracked.member.state !== 'alive') {
      this.transition(peerId, 'alive', 'beacon')
    }
    return news
  }

  /** The member said it is leaving (its signed system event). */
  observeLeave (peerId: string, event: Extract<SystemEvent, { type: 'member.leave' }>): void {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || event.startedAt < tracked.startedAt) return
    tracked.startedAt = event.startedAt
    tracked.member.lastSeen = this.now()
    this.transition(peerId, 'left', 'said it is leaving')
  }

  /** Every connection to the member closed: suspect at once; silence alone decides when it is dead. */
  observeDisconnect (peerId: string): void {
    if (this.members.get(peerId)?.member.state === 'alive') this.transition(peerId, 'suspect', 'disconnected')
  }

  /** Applies the timeouts; call it a few times per suspect interval. */
  tick (): void {
    const now = this.now()
    const { suspectAfterMs, deadAfterMs, reapAfterMs } = this.options
    for (const [peerId, tracked] of this.members) {
      if (peerId === this.selfId) continue
      const silence = now - tracked.silentSince
      const { state } = tracked.member
      if ((state === 'alive' || state === 'suspect') && silence >= deadAfterMs) {
        this.transition(peerId, 'dead', `silent for ${silence} ms`)
      } else if (state === 'alive' && silence >= suspectAfterMs) {
        this.transition(peerId, 'suspect', `silent for ${silence} ms`)
      } else if ((state === 'dead' || state === 'left') && now - tracked.member.lastSeen >= reapAfterMs) {
        this.members.delete(peerId)
        this.dirty.delete(peerId)
        this.emit('reap', tracked.member)
      }
    }
  }

  get (peerId: string): Member | undefined {
    return this.members.get(peerId)?.member
  }

  /** Every member, self included, by name. */
  list (): Member[] {
    return [...this.members.values()].map((t) => t.member).sort((a, b) => a.name.localeCompare(b.name) || a.peerId.localeCompare(b.peerId))
  }

  count (state?: MemberState): number {
    let n = 0
    for (const { member } of this.members.values()) if (state == null || member.state === state) n++
    return n
  }

  /** Members changed since the last call, for the store to write in one batch. */
  takeDirty (): Member[] {
    const out: Member[] = []
    for (const id of this.dirty) {
      const tracked = this.members.get(id)
      if (tracked != null) out.push(tracked.member)
    }
    this.dirty.clear()
    return out
  }

  private transition (peerId: string, to: MemberState, reason: string): void {
    const tracked = this.members.get(peerId)
    if (tracked == null || tracked.member.state === to) return
    const from = tracked.member.state
    tracked.member.state = to
    this.dirty.add(peerId)
    this.emit('change', { member: tracked.member, from, to, reason })
  }
}
