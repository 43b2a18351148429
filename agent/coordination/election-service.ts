import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import { MAX_TERM_STEP, candidateOf, compareCandidates } from './election.ts'
import type { Candidate, Election, ElectionChange } from './election.ts'
import type { MemberBus } from '../membership/bus.ts'
import type { Logger } from '../../common/logger.ts'
import { isLive } from '../membership/membership.ts'
import type { Membership } from '../membership/membership.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import type { EventLog } from '../store/event-log.ts'
import type { CoordinationRecords } from './coordination-records.ts'

/** Re-evaluation backstop, besides every membership change and claim: it ends the settle wait on time. */
const EVALUATE_INTERVAL_MS = 250
export const TERM_STATE_KEY = 'election.term'

/**
 * The term saved by the last run, to start from. A term with no room above it for another claim can only have
 * come from a rogue claim taken before the term ceiling existed: kept, it would wedge this box for good (it
 * would ignore every rightful claim, and its own would be invalid), so it starts from 0 and catches up with the
 * mesh (see `termBasis`).
 */
export function savedTerm (records: Pick<CoordinationRecords, 'getState'>, log: Logger): number {
  const saved = records.getState<unknown>(TERM_STATE_KEY) ?? 0
  if (typeof saved === 'number' && Number.isSafeInteger(saved) && saved >= 0 && saved <= Number.MAX_SAFE_INTEGER - 2 * MAX_TERM_STEP) return saved
  log.warn({ saved }, 'the saved election term is unusable (a rogue claim?): starting from term 0')
  return 0
}

export interface ElectionServiceComponents {
  election: Election
  membership: Membership
  records: CoordinationRecords
  events: EventLog
  metrics: MetricsStore
  log: Logger
  /** How this node ranks (from config and the box). */
  self: () => Candidate
  /**
   * Brings members' beacons (`beacon`) and claims seen elsewhere (`claim`: a decision's term); told when the
   * coordinator changed (`news`), so our beacon says so within a round trip.
   */
  bus: MemberBus
}

/** Feeds the election from beacons, claims and membership changes, and persists and logs its outcome. */
export class ElectionService {
  private readonly election: Election
  private readonly membership: Membership
  private readonly records: CoordinationRecords
  private readonly events: EventLog
  private readonly metrics: MetricsStore
  private readonly log: Logger
  private readonly self: () => Candidate
  private readonly bus: MemberBus
  private timer: NodeJS.Timeout | undefined

  constructor (components: ElectionServiceComponents) {
    this.election = components.election
    this.membership = components.membership
    this.records = components.records
    this.events = components.events
    this.metrics = components.metrics
    this.log = components.log
    this.self = components.self
    this.bus = components.bus
  }

  start (): void {
    this.membership.on('change', this.evaluate)
    this.election.on('change', this.onElectionChange)
    this.bus.on('beacon', this.observeBeacon)
    this.bus.on('claim', this.observeClaim)
    this.timer = setInterval(this.evaluate, EVALUATE_INTERVAL_MS)
  }

  stop (): void {
    clearInterval(this.timer)
    this.membership.off('change', this.evaluate)
    this.election.off('change', this.onElectionChange)
    this.bus.off('beacon', this.observeBeacon)
    this.bus.off('claim', this.observeClaim)
  }

  /** A member's beacon: a coordinator's renews (or makes) its claim; a member's says it holds none. */
  readonly observeBeacon = (peerId: string, beacon: HealthBeacon): void => {
    if (beacon.role === 'coordinator') {
      this.observeClaim(peerId, beacon.term)
      return
    }
    this.election.observeRelease(peerId)
    // Not a claim, but no honest member reports such a term either: counted, and never built on (see evaluate).
    if (beacon.term > this.election.ceiling(this.membership.list())) this.metrics.inc(REJECTED_METRIC, { topic: TOPICS.nodeHealth, reason: 'term-jump' })
  }

  /**
   * `peerId` coordinates `term`, by its own signed word (a beacon or a decision, on `topic`). Only a live,
   * eligible member can hold a term: anything else claiming one (a buggy or rogue peer) is ignored. A term past
   * the ceiling is refused and counted (`term-jump`), so no claim can end elections.
   */
  readonly observeClaim = (peerId: string, term: number, topic: string = TOPICS.nodeHealth): void => {
    const { membership, election } = this
    const claimant = membership.get(peerId)
    if (claimant == null || !isLive(claimant.state) || candidateOf(claimant)?.eligible !== true) return
    const ceiling = election.ceiling(membership.list())
    if (term > ceiling) {
      this.metrics.inc(REJECTED_METRIC, { topic, reason: 'term-jump' })
      this.log.debug({ peer: peerId, term, ceiling }, 'refused a claim past the term ceiling')
      return
    }
    const clash = election.observeClaim(peerId, term, this.rank)
    this.evaluate(clash)
  }

  /** Orders two peer ids by the election's ranking, best first; members we know nothing of rank last. */
  readonly rank = (a: string, b: string): number => {
    const ca = this.candidate(a)
    const cb = this.candidate(b)
    if (ca == null || cb == null) return ca != null ? -1 : cb != null ? 1 : a < b ? -1 : 1
    return compareCandidates(ca, cb)
  }

  private candidate (peerId: string): Candidate | null {
    if (peerId === this.membership.self.peerId) return this.self()
    const member = this.membership.get(peerId)
    return member == null ? null : candidateOf(member)
  }

  private readonly evaluate = (clash: unknown = false): void => {
    this.election.evaluate(this.membership.list(), this.self(), clash === true)
  }

  private readonly onElectionChange = (change: ElectionChange): void => {
    const { term, coordinator, previous, previousTerm, reason } = change
    const { records, events, membership, log } = this
    if (term !== previousTerm) records.putState(TERM_STATE_KEY, term)
    if (coordinator === previous && term === previousTerm) return
    const name = coordinator == null ? null : membership.get(coordinator)?.name ?? coordinator
    log.info({ term, coordinator, previous, reason }, coordinator == null ? `no coordinator (term ${term}): ${reason}` : `coordinator is ${name ?? '?'} (term ${term}): ${reason}`)
    events.record('coordinator.change', coordinator, { term, previous, reason })
    membership.updateSelf({ role: coordinator === membership.self.peerId ? 'coordinator' : 'member' })
    this.bus.emit('news')
  }
}
