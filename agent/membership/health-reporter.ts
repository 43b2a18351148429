import type { HealthBeacon } from '../../protocols/health.ts'
import { healthCodec, recordOf, revOf, wireOf } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import type { EventEmitter } from 'node:events'
import type { MemberBus } from './bus.ts'
import type { HealthSample } from './health.ts'
import type { Logger } from '../../common/logger.ts'
import type { Mesh } from '../mesh/mesh.ts'

/** How long a burst of reasons to beacon early (joins, new subscribers) is gathered into one beacon. */
const EARLY_BEACON_DELAY_MS = 20
/** Asks for members' records wait this long for company: many unknown members cost one early beacon, not many. */
const ASK_DELAY_MS = 100
/** Asks carried by one beacon at most (the wire's limit); more wait for the next. */
const MAX_ASKS = 16
/** Our record goes out in answer to asks, new listeners and members back at most this often: a loop gets no more. */
export const RECORD_ANSWER_MS = 1_000

/**
 * The longest the interval grows with the mesh. Members a key holder makes up count as live until found dead, and
 * far members of a partial mesh are probed only once two beacons are late: without a cap, 1024 made-up members
 * would have stretched both to minutes.
 */
export const MAX_GROWN_INTERVAL_MS = 30_000

/**
 * How often a node beacons in a mesh of `members` (itself included): every `intervalMs`, or `perMemberMs` per
 * member where that is longer (up to MAX_GROWN_INTERVAL_MS), so that the beacons each member receives (and each
 * sends, one to every other) stay near-constant per second as the mesh grows; probes keep detection as fast (see
 * docs/gossip.md).
 */
export function beaconIntervalMs (intervalMs: number, perMemberMs: number, members: number): number {
  return Math.max(intervalMs, Math.min(MAX_GROWN_INTERVAL_MS, Math.round(perMemberMs * members)))
}

export interface HealthReporterComponents {
  mesh: Pick<Mesh, 'node' | 'publish'>
  /**
   * Its `news` asks for a beacon soon, `member-met` for one soon with our record; `record-wanted` for our next beacon to ask a member for its
   * record, `record-asked` for ours. Each beacon sent goes out on it as `own-beacon`.
   */
  bus: MemberBus
  /** The work registry: the beacon lists the work, so a change to it is news too. */
  work: EventEmitter<{ change: [], advertised: [] }>
  sampler: { sample: () => HealthSample }
  log: Logger
  name: string
  version: string
  intervalMs: number
  /** The interval grows by this per member (`beaconIntervalMs`); `members` counts the live ones, us included. */
  intervalPerMemberMs: number
  members: () => number
  startedAt: number
  /** What the node is and does, read afresh for each beacon: role and term, what it can run, its work, its links. */
  describe: () => Pick<HealthBeacon, 'role' | 'term' | 'eligible' | 'priority' | 'cpus' | 'providers' | 'models' | 'work' | 'accepts' | 'running' | 'ingest' | 'degraded' | 'unable' | 'links'>
}

/**
 * Publishes this node's health beacon: a pulse every `beaconIntervalMs` (the figures that change, and the
 * revision of our record), and early when a peer starts listening to the topic, a member joins or comes back,
 * or there is news (the coordinator or our work changed), so that a newcomer learns of everyone in one round trip instead
 * of one beacon interval, and a change is heard within one. The record (what we are: name, addresses, work…)
 * rides along when it changed, for new listeners, and when a member asks for it (at most once a second).
 */
export class HealthReporter {
  private readonly mesh: HealthReporterComponents['mesh']
  private readonly bus: MemberBus
  private readonly work: HealthReporterComponents['work']
  private readonly sampler: HealthReporterComponents['sampler']
  private readonly log: Logger
  private readonly name: string
  private readonly version: string
  private readonly intervalMs: number
  private readonly intervalPerMemberMs: number
  private readonly members: () => number
  private readonly startedAt: number
  private readonly describe: HealthReporterComponents['describe']
  private seq = 0
  private timer: NodeJS.Timeout | undefined
  private early: NodeJS.Timeout | undefined
  /** An ask's answer, held back by `RECORD_ANSWER_MS`. */
  private answerLater: NodeJS.Timeout | undefined
  private stopped = true
  /** Our record's revision in the last beacon; whether the next must carry the record (a new listener, an ask). */
  private sentRev: number | null = null
  private recordDue = true
  private recordSentAt = -Infinity
  /** Members whose record we lack, for the next beacon to ask for. */
  private readonly asks = new Set<string>()

  constructor (components: HealthReporterComponents) {
    this.mesh = components.mesh
    this.bus = components.bus
    this.work = components.work
    this.sampler = components.sampler
    this.log = components.log
    this.name = components.name
    this.version = components.version
    this.intervalMs = components.intervalMs
    this.intervalPerMemberMs = components.intervalPerMemberMs
    this.members = components.members
    this.startedAt = components.startedAt
    this.describe = components.describe
  }

  start (): void {
    this.stopped = false
    this.mesh.node.services.pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.bus.on('news', this.publishSoon)
    this.bus.on('member-met', this.onMemberMet)
    this.bus.on('record-wanted', this.onRecordWanted)
    this.bus.on('record-asked', this.recordSoon)
    this.work.on('change', this.publishSoon)
    this.work.on('advertised', this.publishSoon)
    this.publish()
    this.schedule()
  }

  /** The beacon interval now, for the mesh as large as it is now. */
  intervalNowMs (): number {
    return beaconIntervalMs(this.intervalMs, this.intervalPerMemberMs, this.members())
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.publish()
      this.schedule()
    }, this.intervalNowMs())
  }

  stop (): void {
    this.stopped = true
    this.mesh.node.services.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.bus.off('news', this.publishSoon)
    this.bus.off('member-met', this.onMemberMet)
    this.bus.off('record-wanted', this.onRecordWanted)
    this.bus.off('record-asked', this.recordSoon)
    this.work.off('change', this.publishSoon)
    this.work.off('advertised', this.publishSoon)
    clearTimeout(this.timer)
    clearTimeout(this.early)
    clearTimeout(this.answerLater)
    this.answerLater = undefined
  }

  /** Beacon soon, out of turn; calls within a few milliseconds share one beacon. */
  private readonly publishSoon = (delayMs = EARLY_BEACON_DELAY_MS): void => {
    if (this.stopped || this.early != null) return
    this.early = setTimeout(() => {
      this.early = undefined
      this.publish()
    }, delayMs)
  }

  /**
   * A peer started listening to beacons (a newcomer, a restarted member, one reconnected after a cut): our record
   * too, since it may know nothing of us; paced as answers to asks are, since a peer can subscribe and unsubscribe
   * in a loop. Other news (the coordinator changed) brings an early pulse only: those who hear it have our record
   * already, and one who has not asks.
   */
  private readonly onNewListener = (): void => {
    this.recordSoon()
  }

  /**
   * A member joined or came back: our record, at once for one never in our table (the members a table admits are
   * capped), paced for a restart or a return, which a member can fake in a loop (each answered by every member).
   */
  private readonly onMemberMet = (_peerId: string, first: boolean): void => {
    if (!first) {
      this.recordSoon()
      return
    }
    this.recordDue = true
    this.publishSoon()
  }

  private readonly onRecordWanted = (peerId: string): void => {
    if (this.asks.size >= MAX_ASKS) return
    this.asks.add(peerId)
    this.publishSoon(ASK_DELAY_MS)
  }

  /**
   * Our record, early, or, where one went out within the last `RECORD_ANSWER_MS`, when that time is up: never
   * more often, however often asked (an ask, a new listener, a member back), and never dropped (the asker may
   * have missed the last one).
   */
  private readonly recordSoon = (): void => {
    const waitMs = this.recordSentAt + RECORD_ANSWER_MS - performance.now()
    if (waitMs <= 0) {
      this.recordDue = true
      this.publishSoon()
      return
    }
    if (this.stopped || this.answerLater != null) return
    this.answerLater = setTimeout(() => {
      this.answerLater = undefined
      this.recordSoon()
    }, Math.ceil(waitMs))
  }

  /** This node's multiaddrs for others to dial: without loopback ones when it has others, and without /p2p. */
  announceAddrs (): string[] {
    const addrs = this.mesh.node.getMultiaddrs().map((ma) => ma.decapsulateCode(421).toString())
    const external = addrs.filter((a) => !/^\/(ip4\/127\.|ip6\/::1\/)/.test(a))
    return [...new Set(external.length > 0 ? external : addrs)].slice(0, 8)
  }

  /** From timers: a failure to describe the node (a store read on a failing disk) is logged, and the next beacon tries again. */
  private publish (): void {
    if (this.stopped) return
    try {
      this.publishBeacon()
    } catch (err) {
      this.log.error({ err }, 'health beacon not built')
    }
  }

  private publishBeacon (): void {
    const beacon: HealthBeacon = {
      v: 1,
      name: this.name,
      version: this.version,
      startedAt: this.startedAt,
      seq: ++this.seq,
      uptimeS: Math.round((Date.now() - this.startedAt) / 100) / 10,
      ...this.sampler.sample(),
      addrs: this.announceAddrs(),
      ...this.describe()
    }
    const record = recordOf(beacon)
    const rev = revOf(record)
    const withRecord = this.recordDue || rev !== this.sentRev
    this.sentRev = rev
    if (withRecord) {
      this.recordDue = false
      this.recordSentAt = performance.now()
    }
    const message = wireOf(beacon, rev, { record: withRecord ? record : undefined, ask: [...this.asks] })
    this.asks.clear()
    this.bus.emit('own-beacon', beacon)
    this.mesh.publish(healthCodec, message).catch((err: unknown) => {
      this.log.warn({ err }, 'health beacon not published')
    })
  }

  private readonly onSubscriptionChange = (event: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (event.detail.subscriptions.some((s) => s.subscribe && s.topic === TOPICS.nodeHealth)) this.onNewListener()
  }
}
