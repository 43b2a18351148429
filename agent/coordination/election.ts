import { EventEmitter } from 'node:events'
import { BoundedMap } from '../../common/bounded-map.ts'
import { isLive } from '../membership/membership.ts'
import type { Member } from '../membership/membership.ts'

/** What the election needs to know of a member: from its beacons (self: from config and the sampler). */
export interface Candidate {
  peerId: string
  eligible: boolean
  priority: number
  /** Static facts only (never load), so the ranking does not flap: see `capabilityOf`. */
  capability: number
}

const GiB = 1024 ** 3

/** Accelerators first, then cores, then memory: what makes a box a good orchestrator and a good fallback. */
export function capabilityOf (health: { accelerators: string[], cpus: number, memTotalBytes: number }): number {
  return health.accelerators.length * 10_000 + health.cpus * 100 + Math.floor(health.memTotalBytes / GiB)
}

/** Orders candidates best first: eligible, then higher priority, then higher capability, then lower peer id. */
export function compareCandidates (a: Candidate, b: Candidate): number {
  if (a.eligible !== b.eligible) return a.eligible ? -1 : 1
  return b.priority - a.priority || b.capability - a.capability || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0)
}

export function candidateOf (member: Member): Candidate | null {
  const h = member.health
  // Members restored from an older store may lack the fields; their next beacon brings them.
  if (h == null || typeof h.cpus !== 'number') return null
  return { peerId: member.peerId, eligible: h.eligible, priority: h.priority, capability: capabilityOf(h) }
}

/**
 * How far above the term this box goes by (`termBasis`) a claim may reach. Terms grow by one per election, so an
 * honest claim is never near it; a claim beyond it (a rogue or broken member claiming the top of the integer
 * range, after which no rightful claim could ever be higher) is refused, and elections go on. A rogue that
 * climbs by this much per claim needs ~9·10¹² claims to reach the top.
 */
export const MAX_TERM_STEP = 1000

/** Slack for clocks that disagree (a box whose clock was restored from its last shutdown, say). */
export const CLOCK_SLACK_MS = 24 * 3_600_000

/**
 * The highest term anybody can hold honestly now, by this box's clock: its milliseconds since 1970, plus a day.
 * A term counts elections, so an honest one never comes near it; members' make-believe (any number of signing
 * keys, each reporting the top of the integer range) cannot move it.
 */
export function plausibleTerm (now: number): number {
  return Math.max(0, Math.floor(now)) + CLOCK_SLACK_MS
}

/**
 * The term this box goes by: its own, or the lower median of its own and the plausible terms its live members
 * report, if that is higher. A box that was away while the mesh held many elections so catches up with the
 * others; terms past `plausibleTerm` do not count, so members a rogue makes up cannot drag it past the clock.
 */
export function termBasis (ownTerm: number, members: Member[], selfId: string, now: number): number {
  const limit = plausibleTerm(now)
  const terms = [ownTerm, ...members.filter((m) => m.peerId !== selfId && isLive(m.state) && m.health != null)
    .map((m) => m.health?.term ?? 0).filter((term) => term <= limit)].sort((a, b) => a - b)
  return Math.max(ownTerm, terms[Math.floor((terms.length - 1) / 2)] as number)
}

/**
 * The highest term a claim may carry now: `MAX_TERM_STEP` above the basis, or, if higher, the clock's
 * milliseconds since 1970 (so a box far behind still takes any honest claim, with nobody to vouch for it); and
 * never past `plausibleTerm`. A rogue can so take the term at most to the clock plus a day, where it moves as
 * time does: elections go on for 280,000 years, whatever it claims and however many members it makes up.
 */
export function termCeiling (ownTerm: number, members: Member[], selfId: string, now: number): number {
  return Math.min(plausibleTerm(now), Math.max(termBasis(ownTerm, members, selfId, now) + MAX_TERM_STEP, Math.floor(now)))
}

export interface ElectionChange {
  term: number
  coordinator: string | null
  /** The coordinator and term before this change. */
  previous: string | null
  previousTerm: number
  reason: string
}

export interface ElectionEvents {
  change: [ElectionChange]
}

/**
 * Who coordinates, by term. Every member computes the same answer from the membership it sees:
 *
 * - The rightful coordinator is the best-ranked member that is alive or suspect (eligible, then priority, then
 *   capability, then peer id). When it is us and we do not hold the current term, we claim `term + 1` (higher
 *   than any term we know of), and our beacons, sent at once and then every interval, carry the claim: they are
 *   the lease, and it lapses when failure detection declares us dead.
 * - A claim with a higher term wins, up to `termCeiling`: whoever held a lower one steps down on seeing it. A
 *   claim above the ceiling is refused by the caller (ElectionService), and terms above it that members report
 *   are not built on.
 * - Two claims of the same term (two partitions healed, or a race) are settled by rank: the better claimant
 *   claims again with `term + 1`, so each term ends up with one coordinator that everyone agrees on.
 * - A fresh agent waits `settleUntil` before claiming, so that it learns the mesh's term and members first.
 *
 * The term is persisted by the caller, so a restart never reuses an old one. See docs/election.md.
 */
export class Election extends EventEmitter<ElectionEvents> {
  private readonly selfId: string
  private readonly now: () => number
  private readonly settleUntil: number
  private readonly claimGraceMs: number
  private currentTerm: number
  private holder: string | null = null
  /** Members that rank best but hold nothing: since when (see `claimGraceMs`). */
  private readonly unclaimedSince = new BoundedMap<string, number>(1024)

  constructor (components: {
    selfId: string
    term: number
    settleUntil: number
    /**
     * How long a member that ranks best may leave the term unclaimed before it is passed over (until it claims):
     * a rightful coordinator claims within its settle time, so one that does not is broken, or a rogue beaconing
     * the top priority to leave the mesh without a coordinator. Unset: never passed over.
     */
    claimGraceMs?: number
    now?: () => number
  }) {
    super()
    this.selfId = components.selfId
    this.currentTerm = components.term
    this.settleUntil = components.settleUntil
    this.claimGraceMs = components.claimGraceMs ?? Infinity
    this.now = components.now ?? Date.now
  }

  get term (): number {
    return this.currentTerm
  }

  /** The coordinator of the current term, or null while there is none (it died, or nobody has claimed yet). */
  get coordinator (): string | null {
    return this.holder
  }

  get isCoordinator (): boolean {
    return this.holder === this.selfId
  }

  /** The highest term a claim may carry now, given the members' reported terms (see `termCeiling`). */
  ceiling (members: Member[]): number {
    return termCeiling(this.currentTerm, members, this.selfId, this.now())
  }

  /**
   * `peerId` says it coordinates `term` (its beacon, or a decision it signed). `rank` orders two peer ids, best
   * first, for when two claim the same term. Returns true on such a clash: pass it to `evaluate`.
   */
  observeClaim (peerId: string, term: number, rank: (a: string, b: string) => number): boolean {
    this.unclaimedSince.delete(peerId)
    if (term < this.currentTerm || (term === this.currentTerm && this.holder === peerId)) return false
    if (term > this.currentTerm || this.holder == null) {
      this.set(term, peerId, this.holder === peerId ? 'claimed again, past a clash' : 'claimed')
      return false
    }
    // Two claims of one term: the better-ranked one stands for now, and claims term + 1 when it evaluates.
    if (rank(peerId, this.holder) < 0) this.set(term, peerId, 'a better-ranked member claimed the same term')
    return true
  }

  /** The coordinator says it no longer coordinates (a beacon as a member: it restarted, or stepped down). */
  observeRelease (peerId: string): void {
    if (this.holder === peerId && peerId !== this.selfId) this.set(this.currentTerm, null, 'the coordinator stepped down')
  }

  /**
   * Re-evaluates after any membership change: drops a coordinator that is dead or gone, and claims when we are
   * the rightful coordinator. `clash` is set when a member that is not the holder claims the current term (our
   * cue, if we rank best, to claim past it). Returns true when we just claimed.
   */
  evaluate (members: Member[], self: Candidate, clash = false): boolean {
    const live = members.filter((m) => isLive(m.state) || m.peerId === this.selfId)
    if (this.holder != null && this.holder !== this.selfId && !live.some((m) => m.peerId === this.holder)) {
      this.set(this.currentTerm, null, 'the coordinator is gone')
    }
    // Terms beyond the ceiling are refused as claims: a member that reports one cannot be the rightful coordinator
    // (waiting for it would stall elections), and building on one would make our own claim unacceptable too.
    const ceiling = this.ceiling(members)
    const candidates = live.flatMap((m) => {
      if (m.peerId === this.selfId) return [self]
      const c = (m.health?.term ?? 0) > ceiling ? null : candidateOf(m)
      return c == null ? [] : [c]
    }).filter((c) => c.eligible).sort(compareCandidates)
    const best = this.claimant(candidates)
    if (best?.peerId !== this.selfId || this.now() < this.settleUntil) return false
    if (this.holder === this.selfId && !clash) return false
    const highest = Math.max(this.currentTerm, ...members.map((m) => m.health?.term ?? 0).filter((t) => t < ceiling))
    this.set(highest + 1, this.selfId, this.holder == null ? 'no coordinator: we rank best' : clash ? 'settling two claims of one term' : 'we rank best')
    return true
  }

  /**
   * The rightful coordinator: the best-ranked candidate, passing over any that has ranked best for
   * `claimGraceMs` without claiming (see the constructor). The holder and this box are never passed over.
   */
  private claimant (ranked: Candidate[]): Candidate | undefined {
    const now = this.now()
    const waitingFor = new Set<string>()
    let found: Candidate | undefined
    for (const candidate of ranked) {
      const { peerId } = candidate
      if (peerId === this.selfId || peerId === this.holder) {
        found = candidate
        break
      }
      waitingFor.add(peerId)
      const since = this.unclaimedSince.get(peerId) ?? now
      this.unclaimedSince.set(peerId, since)
      if (now - since < this.claimGraceMs) {
        found = candidate
        break
      }
    }
    // A member that no longer ranks best starts its grace afresh should it rank best again.
    for (const peerId of [...this.unclaimedSince.keys()]) if (!waitingFor.has(peerId)) this.unclaimedSince.delete(peerId)
    return found
  }

  private set (term: number, holder: string | null, reason: string): void {
    const previous = this.holder
    const previousTerm = this.currentTerm
    this.currentTerm = term
    this.holder = holder
    this.emit('change', { term, coordinator: holder, previous, previousTerm, reason })
  }
}
