import { EventEmitter } from 'node:events'
import { pairLeader } from '../../common/pairs.ts'
import type { HealthBeacon, Role } from '../../protocols/health.ts'
import type { SystemEvent } from '../../protocols/events.ts'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** Alive or suspect: a member still counted in (probed, dialled, able to hold the coordinator's lease). */
export function isLive (state: MemberState): boolean {
  return state === 'alive' || state === 'suspect'
}

/** What a member's last beacon said about it, less the beacon's bookkeeping (kept on the member itself). */
export type MemberHealth = Omit<HealthBeacon, 'v' | 'name' | 'startedAt' | 'seq' | 'role' | 'addrs'>

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
  /** Silence after which a member is pinged. */
  probeAfterMs: number
  /** How long a probe may take; a slow member is probed again two of these after its box answered. */
  probeTimeoutMs: number
  /** Silence after which a member whose box still accepts connections (a wedged agent) is dead all the same. */
  unresponsiveAfterMs: number
  reapAfterMs: number
  /** Members kept at most, self and the dead included (membership.maxMembers; DEFAULT_MAX_MEMBERS). */
  maxMembers?: number
  /**
   * A partial mesh (mesh.connections > 0): connections are closed on purpose (a member past its cap closes the
   * newest), so a closed connection only gets the member probed at once (`observeDisconnect`), never suspected;
   * and a member we hold no connection to is probed for its silence later (`takeProbes`).
   */
  partialMesh?: boolean
  /**
   * How often members beacon with this many live members (health.intervalMs, health.intervalPerMemberMs): in a
   * partial mesh a far member's beacons are what say it lives, so it is probed only once two are missed.
   */
  beaconIntervalMs?: (liveMembers: number) => number
}

/**
 * Members at most, by default. Every member is kept connected, dialled, probed and written to the store, and the
 * mesh is a full mesh of direct connections, which libp2p's connection manager caps at a few hundred anyway: a
 * site with more boxes than this is not what Noodle is built for, and a key holder signing beacons with made-up
 * keys must not grow the table (and all that follows it) without limit.
 */
export const DEFAULT_MAX_MEMBERS = 1024

/** How long a member must have been in the table before its death keeps its place in a full one. */
export const STANDING_MS = 10 * 60_000

/** A beacon from a peer that did not join, and why (the label its refusal is counted under). */
export interface MemberRefusal {
  peerId: string
  name: string
  reason: 'too-many-members'
}

/**
 * What probing a member came to: its agent answered a ping; only its box did (a TCP connection to its port was
 * accepted by the kernel, so the process lives but is too slow to answer); nothing answered in time; nothing
 * listens at its addresses (the process is gone); or our own stall makes the result meaningless.
 */
export type ProbeOutcome = 'answered' | 'knocked' | 'timeout' | 'refused' | 'inconclusive'

interface Tracked {
  member: Member
  /** Which run of the member's agent we follow, and its last beacon's counter: they order beacons. */
  startedAt: number
  seq: number
  /** Start of the current silence: the last beacon or answered ping, or our own start for restored members. */
  silentSince: number
  /** Probes unanswered in a row; a probe in flight (and when it started); one wanted at once; none before. */
  failedProbes: number
  probeStartedAt: number | null
  probeNow: boolean
  probeNotBefore: number
  /** When its first beacon came (0: remembered from an earlier run, or ourselves): how long it has stood. */
  joinedAt: number
  /** When it last heard from us for sure: our ping to it was answered, or we echoed its ping. */
  heardUsAt: number
  /** Whether we are the one of our pair who pings (see `pairLeader`). */
  pinger: boolean
}

export interface MembershipEvents {
  change: [MemberChange]
  reap: [Member]
  refuse: [MemberRefusal]
}

export function healthOf (beacon: HealthBeacon): MemberHealth {
  const { v: _v, name: _name, startedAt: _startedAt, seq: _seq, role: _role, addrs: _addrs, ...health } = beacon
  return health
}

/** Partial mesh: how many times longer a member we hold no connection to may be silent before we probe it. */
export const FAR_SILENCE = 3
/**
 * How much longer the member of a pair who is not its pinger (`pairLeader`) waits before pinging the other: past
 * the pinger's ping (its prober's tick, the round trip, a loaded box's delay), which then spares it its own.
 */
export const ANSWERER_SLACK_MS = 150
/** How many beacons ahead of the one we hold a verdict may name (see `probeOnVerdict`). */
export const VERDICT_SEQ_SLACK = 3

/**
 * Who is in the mesh and in what state, from health beacons, pings, leave events and connection events.
 * Silence alone never kills a member: it only makes us ask (ping), and only unanswered pings or a refused
 * connection make it dead, so a member that is slow but alive answers and stays.
 *
 *   alive ──(a probe unanswered, or every connection to it closed)──▶ suspect ──(2nd probe unanswered)──▶ dead
 *     │                                                                                                     ▲
 *     └───────────────────────────(connection refused: nothing listens any more)────────────────────────────┘
 *   suspect ──(its box accepts a connection but its agent stays silent for unresponsiveAfterMs)──▶ dead
 *   suspect/dead ──(a newer beacon, or an answered ping: a dead member is pinged when it connects again)──▶ alive
 * In a partial mesh (mesh.connections > 0) a closed connection says nothing (they are closed on purpose) and
 * neither does another member's verdict: each only brings a probe at once, and the probe decides.
 *
 * A probe is a libp2p ping and, alongside, a bare TCP connection to the member's port: the kernel accepts that
 * even when the agent is starved of CPU, so a slow member is told apart from a gone one within the probe.
 *   any state ──(its own signed leave event)──▶ left;  dead/left ──(reapAfterMs)──▶ forgotten
 *   (unknown) ──(first beacon)──▶ alive, unless `maxMembers` are known already: then a member that left, or one
 *   that died within STANDING_MS of joining, is forgotten to make room (longest silent first); with none, the
 *   newcomer is refused (not a member), so made-up keys cannot grow the table, nor, by beaconing once and going,
 *   lock new boxes out until they are reaped. Live members, the dead of standing and bootstrap peers stay.
 *
 * Members silent for `probeAfterMs` (no beacon, no answered ping, no ping of theirs: `heardPing`), and members
 * whose connections all closed, are handed out by `takeProbes()`; the caller pings them and reports with
 * `observeProbe()`. In a full mesh each pair pings one way (`pairLeader`): the pinger also pings when the other has
 * not heard from it (our last beacon, `spoke`), and the other waits ANSWERER_SLACK_MS longer.
 * Time is passed in (`now`), so the whole table is testable without a clock or a network.
 */
export class Membership extends EventEmitter<MembershipEvents> {
  private readonly members = new Map<string, Tracked>()
  private readonly dirty = new Set<string>()
  private readonly options: MembershipOptions
  private readonly selfId: string
  /** When we last sent our beacon (`spoke`); our start, before the first. */
  private spokeToAllAt: number
  private readonly now: () => number
  private readonly maxMembers: number
  /** Peers admitted past the cap: the configured bootstrap peers. */
  private readonly reserved: Set<string>

  constructor (components: { self: Member, options: MembershipOptions, now?: () => number, reserved?: Iterable<string> }) {
    super()
    this.options = components.options
    this.now = components.now ?? Date.now
    this.selfId = components.self.peerId
    this.maxMembers = components.options.maxMembers ?? DEFAULT_MAX_MEMBERS
    this.reserved = new Set(components.reserved)
    this.spokeToAllAt = this.now()
    this.members.set(this.selfId, track({ ...components.self, state: 'alive' }, 0, 0, this.spokeToAllAt))
  }

  get self (): Member {
    return (this.members.get(this.selfId) as Tracked).member
  }

  /**
   * Members remembered from an earlier run. Nothing vouches for them yet, so those that were alive come back
   * suspect; their silence is timed from now, so a restart alone declares nobody dead. Returns how many were
   * left out for want of room (a store written with a higher `maxMembers`).
   */
  restore (members: Iterable<Member>): number {
    const now = this.now()
    let skipped = 0
    for (const member of members) {
      if (member.peerId === this.selfId || this.members.has(member.peerId)) continue
      if (!this.hasRoomFor(member.peerId)) {
        skipped++
        continue
      }
      const state = member.state === 'alive' ? 'suspect' : member.state
      this.members.set(member.peerId, track({ ...member, state }, 0, 0, now, 0, pairLeader(this.selfId, member.peerId)))
    }
    return skipped
  }

  /** Whether a peer not in the table may join it: while it has room, or always for a bootstrap peer. */
  private hasRoomFor (peerId: string): boolean {
    return this.members.size < this.maxMembers || this.reserved.has(peerId)
  }

  updateSelf (fields: Partial<Omit<Member, 'peerId' | 'state'>>): void {
    const self = this.members.get(this.selfId) as Tracked
    Object.assign(self.member, fields, { lastSeen: this.now() })
    this.dirty.add(this.selfId)
  }

  /**
   * A beacon passed validation. Returns true when it is news: a member we did not know, a restarted one, or one
   * coming back from suspect/dead/left (the caller answers with its own beacon so the newcomer learns of it at once).
   * A peer we do not know is refused (a `refuse` event) while the table is full.
   */
  observeBeacon (peerId: string, beacon: HealthBeacon): boolean {
    if (peerId === this.selfId) return false
    const now = this.now()
    const tracked = this.members.get(peerId)
    if (tracked == null && !this.hasRoomFor(peerId) && !this.makeRoom()) {
      this.emit('refuse', { peerId, name: beacon.name, reason: 'too-many-members' })
      return false
    }
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
    const next = track(member, beacon.startedAt, beacon.seq, now, tracked == null ? now : tracked.joinedAt, tracked?.pinger ?? pairLeader(this.selfId, peerId))
    next.probeStartedAt = tracked?.probeStartedAt ?? null
    next.heardUsAt = tracked?.heardUsAt ?? 0
    this.members.set(peerId, next)
    this.dirty.add(peerId)
    if (tracked == null) {
      member.state = 'alive'
      this.emit('change', { member, from: null, to: 'alive', reason: 'first beacon' })
    } else if (tracked.member.state !== 'alive') {
      this.transition(peerId, 'alive', 'beacon')
    }
    return news
  }

  /** Whether `beacon` is the newest we have from the member: a late or replayed older one is not. */
  isLatest (peerId: string, beacon: HealthBeacon): boolean {
    const tracked = this.members.get(peerId)
    return tracked != null && tracked.startedAt === beacon.startedAt && tracked.seq === beacon.seq && tracked.member.state !== 'left'
  }

  /** The member said it is leaving (its signed system event). */
  observeLeave (peerId: string, event: Extract<SystemEvent, { type: 'member.leave' }>): void {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || event.startedAt < tracked.startedAt) return
    tracked.startedAt = event.startedAt
    tracked.member.lastSeen = this.now()
    this.transition(peerId, 'left', 'said it is leaving')
  }

  /**
   * A connection to a member we list dead opened (a partition healed, or it came back on the same run). Its next
   * beacon may be many seconds off, and one no newer than ours would not bring it back, so it is probed at once:
   * an answered ping makes it alive. Returns whether it wants that probe.
   */
  observeConnect (peerId: string): boolean {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || tracked.member.state !== 'dead' || tracked.probeStartedAt != null) return false
    tracked.probeNow = true
    return true
  }

  /**
   * Every connection to the member closed: ping it at once (a dead process refuses), and in a full mesh suspect it
   * at once too.
   */
  observeDisconnect (peerId: string): void {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || tracked.member.state !== 'alive') return
    tracked.probeNow = true
    // A partial mesh closes connections on purpose (past mesh.connections): probed at once, not suspected for it.
    if (this.options.partialMesh !== true) this.transition(peerId, 'suspect', 'disconnected')
  }

  /**
   * Members to ping now: those silent for `probeAfterMs × scale`, suspects (a second ping decides), and those
   * that just disconnected or another member found dead; never two pings in flight to one member. `scale` ≥ 1
   * widens the wait while our own event loop lags (Lifeguard): we may simply not have read their beacons yet.
   * In a partial mesh, a member we hold no connection to (not in `near`) is due for its silence only after
   * FAR_SILENCE × that: its pulses come forwarded, later, and its ping needs a whole new connection within the
   * probe's timeout, which a loaded box missed often enough to keep a few of 16 members suspect at any time
   * (bench/election --connections 6). Its death reaches us sooner as a verdict from a member connected to it.
   */
  takeProbes (scale = 1, near?: ReadonlySet<string>): string[] {
    const now = this.now()
    const farWait = this.farWait(scale)
    const due: string[] = []
    for (const [peerId, tracked] of this.members) {
      if (this.probeDueAt(peerId, tracked, now, scale, near, farWait) <= now) {
        tracked.probeNow = false
        tracked.probeStartedAt = now
        due.push(peerId)
      }
    }
    return due
  }

  /**
   * How long until `takeProbes(scale)` would hand out a member (ms; 0 when one is due now, Infinity when none
   * can be): the prober sleeps until then rather than polling.
   */
  msUntilProbe (scale = 1, near?: ReadonlySet<string>): number {
    const now = this.now()
    let soonest = Infinity
    const farWait = this.farWait(scale)
    for (const [peerId, tracked] of this.members) soonest = Math.min(soonest, this.probeDueAt(peerId, tracked, now, scale, near, farWait) - now)
    return Math.max(0, soonest)
  }

  /** Partial mesh: the silence after which a member we hold no connection to is probed. */
  private farWait (scale: number): number {
    if (this.options.partialMesh !== true) return Infinity
    const beacons = this.options.beaconIntervalMs?.(this.count('alive') + this.count('suspect')) ?? 0
    return Math.max(FAR_SILENCE * this.options.probeAfterMs, 2 * beacons) * scale
  }

  /**
   * When the member is due a ping (see `takeProbes`): at once when told to or suspect, else once silent long
   * enough, and never before its `probeNotBefore`; Infinity for ourselves, one with a ping out, and the dead or
   * gone. `takeProbes` and `msUntilProbe` both read it, so the prober never sleeps past a member `takeProbes`
   * would hand out.
   */
  private probeDueAt (peerId: string, tracked: Tracked, now: number, scale: number, near: ReadonlySet<string> | undefined, farWait: number): number {
    const { state } = tracked.member
    // The dead are probed only when one connects again (observeConnect).
    if (peerId === this.selfId || tracked.probeStartedAt != null || !(isLive(state) || (state === 'dead' && tracked.probeNow))) return Infinity
    let wait = this.options.probeAfterMs * scale
    if (this.options.partialMesh === true && near !== undefined && !near.has(peerId)) wait = farWait
    // A full mesh's pairs ping one way (ping-responder.ts): one of the two pings the other as soon as either has
    // not heard from the other lately (its beacon or our ping, our beacon or its ping), and its answered ping tells
    // both that the other lives. The other waits a little longer, so it pings only when those pings stop. (In a
    // partial mesh, members far off hear our beacons through gossip, and nobody pings for another's sake.)
    let since = tracked.silentSince
    if (this.options.partialMesh !== true) {
      if (tracked.pinger) since = Math.min(since, Math.max(tracked.heardUsAt, this.spokeToAllAt))
      else wait += ANSWERER_SLACK_MS
    }
    const silent = tracked.probeNow || state === 'suspect' ? now : since + wait
    return Math.max(tracked.probeNotBefore, silent)
  }

  /** The ping handed out by `takeProbes()` came back. */
  observeProbe (peerId: string, outcome: ProbeOutcome): void {
    const tracked = this.members.get(peerId)
    if (tracked?.probeStartedAt == null) return
    const startedAt = tracked.probeStartedAt
    tracked.probeStartedAt = null
    const { state } = tracked.member
    const now = this.now()
    // A dead member is probed only once it connected again (observeConnect): only an answer counts then.
    if (!isLive(state) && !(state === 'dead' && outcome === 'answered')) return
    if (outcome === 'answered') {
      // Seen now, though not written to the store for it: beacons, which may be many seconds apart, do that.
      tracked.silentSince = tracked.heardUsAt = tracked.member.lastSeen = now
      tracked.failedProbes = 0
      this.transition(peerId, 'alive', state === 'dead' ? 'connected again, and answered a ping' : 'answered a ping')
    } else if (tracked.silentSince > startedAt || outcome === 'inconclusive') {
      // A beacon arrived while the ping was out (the member spoke, whatever the ping says), or we stalled.
    } else if (outcome === 'knocked') {
      // Alive but starved (CPU, swap): it keeps its suspect mark and is asked again a little later. Not at once:
      // it is struggling. Not much later: a SIGKILLed agent's box can still accept a connection for a few
      // milliseconds while the kernel tears the process down.
      tracked.failedProbes = 0
      tracked.probeNotBefore = now + 2 * this.options.probeTimeoutMs
      const silence = now - tracked.silentSince
      if (silence >= this.options.unresponsiveAfterMs) this.transition(peerId, 'dead', `unresponsive for ${Math.round(silence / 1000)} s, though its box accepts connections`)
      else this.transition(peerId, 'suspect', 'slow: its box accepts connections, its agent does not answer')
    } else if (outcome === 'refused') {
      this.transition(peerId, 'dead', 'connection refused: nothing listens at its addresses')
    } else if (++tracked.failedProbes >= 2) {
      this.transition(peerId, 'dead', `${tracked.failedProbes} pings unanswered`)
    } else {
      this.transition(peerId, 'suspect', 'a ping unanswered')
    }
  }

  /** We sent our beacon: every member heard from us (which spares their pings, see `probeDueAt`). */
  spoke (): void {
    this.spokeToAllAt = this.now()
  }

  /**
   * The member pinged us: it spoke, as in a beacon, so its silence starts anew and we do not ping it for a while
   * (one ping a pair of members in one direction shows both that the other lives). Only an `alive` member: a
   * suspect one is cleared by a beacon or by our own ping, never by its word that it can reach us.
   */
  heardPing (peerId: string): void {
    const tracked = this.members.get(peerId)
    if (tracked === undefined || tracked.member.state !== 'alive') return
    // We echoed it, so it heard from us as well.
    tracked.silentSince = tracked.heardUsAt = tracked.member.lastSeen = Math.max(tracked.silentSince, this.now())
  }

  /**
   * Our own event loop stalled for `ms` (the process was descheduled, or something blocked it): nothing could be
   * heard meanwhile, so that time does not count as anyone's silence.
   */
  forgiveStall (ms: number): void {
    // Nor could anyone hear from us: none is pinged at once for its sake when we wake.
    this.spokeToAllAt += ms
    for (const tracked of this.members.values()) {
      tracked.silentSince += ms
      tracked.heardUsAt += ms
    }
  }

  /**
   * Makes room in a full table for a newcomer by forgetting, longest silent first, a member that left (its work
   * is not placed again, so nothing needs it), or one that died having stood less than `STANDING_MS` (a key
   * holder's made-up members beacon once and go). Members of standing that died are kept until reaped: the
   * coordinator moves their work meanwhile. Returns whether it made room.
   */
  private makeRoom (): boolean {
    let oldest: Tracked | undefined
    for (const [peerId, tracked] of this.members) {
      const { state, lastSeen } = tracked.member
      if (peerId === this.selfId || this.reserved.has(peerId)) continue
      const evictable = state === 'left' || (state === 'dead' && tracked.joinedAt > 0 && lastSeen - tracked.joinedAt < STANDING_MS)
      if (evictable && (oldest === undefined || lastSeen < oldest.member.lastSeen)) oldest = tracked
    }
    if (oldest === undefined) return false
    this.members.delete(oldest.member.peerId)
    this.dirty.delete(oldest.member.peerId)
    this.emit('reap', oldest.member)
    return true
  }

  /** Forgets dead and left members after `reapAfterMs`; call it now and then. */
  tick (): void {
    const now = this.now()
    const { reapAfterMs } = this.options
    for (const [peerId, tracked] of this.members) {
      const { state } = tracked.member
      if ((state === 'dead' || state === 'left') && now - tracked.member.lastSeen >= reapAfterMs) {
        this.members.delete(peerId)
        this.dirty.delete(peerId)
        this.emit('reap', tracked.member)
      }
    }
  }

  get (peerId: string): Member | undefined {
    return this.members.get(peerId)?.member
  }

  /** Every member, self included, unsorted: for callers that scan the table or sort it their own way. */
  unsorted (): Member[] {
    return Array.from(this.members.values(), (t) => t.member)
  }

  /**
   * Which of the member's beacons we hold: its run and counter (SWIM's incarnation). A verdict names it, so
   * that a newer beacon refutes the verdict (see `observeVerdict`).
   */
  beaconOf (peerId: string): { startedAt: number, seq: number } | undefined {
    const tracked = this.members.get(peerId)
    return tracked == null ? undefined : { startedAt: tracked.startedAt, seq: tracked.seq }
  }

  /**
   * Another member's word on this one, spread by gossip in a partial mesh (mesh.connections > 0), where nobody
   * probes every member: `suspect` once a direct probe and the indirect ones through other members went
   * unanswered, `dead` once that suspicion ran its time unrefuted. `about` is the beacon the verdict was made
   * against: a newer one (the member refuting, or just beaconing) voids it, so a late verdict kills nobody.
   * A `dead` verdict on a member we hold alive makes it only suspect: we never heard the suspicion, which spread
   * while we were cut off from its maker (a partition healing), so the member has not heard it either; the
   * verdict reaches it next, and it refutes. Returns whether the state changed (only news is forwarded).
   */
  observeVerdict (peerId: string, to: 'suspect' | 'dead', about: { startedAt: number, seq: number }, reason: string): boolean {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || !isLive(tracked.member.state) || tracked.member.state === to) return false
    if (about.startedAt < tracked.startedAt || (about.startedAt === tracked.startedAt && about.seq < tracked.seq)) return false
    this.transition(peerId, tracked.member.state === 'alive' ? 'suspect' : to, reason)
    return true
  }

  /**
   * What the agent does with another member's word that this one died (a partial mesh's verdict,
   * protocols/verdicts.ts): it probes the member at once, and its probe decides; hearsay never changes its state.
   * (`observeVerdict`, which does, is the large-mesh design bench/simulate.ts runs: see docs/scale.md.) `about` is the beacon the verdict was made
   * against: an older one than we hold is void (it came back since), and so is one of a run we do not know or
   * more than VERDICT_SEQ_SLACK beacons ahead of ours (its maker may have heard a pulse or two we have not yet;
   * past that, a liar naming ever newer beacons would have us probe in a loop). Returns whether a probe was
   * scheduled.
   */
  probeOnVerdict (peerId: string, about: { startedAt: number, seq: number }): boolean {
    const tracked = this.members.get(peerId)
    if (tracked == null || peerId === this.selfId || !isLive(tracked.member.state)) return false
    if (about.startedAt !== tracked.startedAt || about.seq < tracked.seq || about.seq > tracked.seq + VERDICT_SEQ_SLACK) return false
    tracked.probeNow = true
    return true
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

  /** The member's silence so far (ms), for tests and views. */
  silenceOf (peerId: string): number | undefined {
    const tracked = this.members.get(peerId)
    return tracked == null ? undefined : this.now() - tracked.silentSince
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

function track (member: Member, startedAt: number, seq: number, silentSince: number, joinedAt = 0, pinger = true): Tracked {
  return { member, startedAt, seq, silentSince, failedProbes: 0, probeStartedAt: null, probeNow: false, probeNotBefore: 0, joinedAt, heardUsAt: 0, pinger }
}
