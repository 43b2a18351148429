import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { systemEventCodec } from '../../protocols/events.ts'
import type { SystemEvent } from '../../protocols/events.ts'
import { healthCodec } from '../../protocols/health.ts'
import { memberVerdictCodec } from '../../protocols/verdicts.ts'
import type { MemberVerdict } from '../../protocols/verdicts.ts'
import type { HealthBeacon, HealthWire } from '../../protocols/health.ts'
import type { PeerDialer } from '../mesh/dialer.ts'
import type { Logger } from '../../common/logger.ts'
import { healthOf } from './membership.ts'
import type { Membership, MemberChange, Member, MemberRefusal } from './membership.ts'
import type { MemberBus } from './bus.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import type { EventLog } from '../store/event-log.ts'
import type { MemberRecords } from './member-records.ts'
import type { MemberBeacons } from './member-beacons.ts'

/** How often the store gets the latest member figures: state changes are written at once, health in batches. */
const FLUSH_INTERVAL_MS = 5_000

export interface MembershipServiceComponents {
  mesh: Pick<Mesh, 'node' | 'peerId' | 'subscribe' | 'unsubscribe' | 'publish'>
  /**
   * Where it tells of a member's newest beacon (`beacon`), of a member joining or coming back (`member-met`:
   * answer with our beacon and record), of a member to probe now (`probe-now`: its last connection closed,
   * another found it dead, or one we list dead connected again), of a record we lack (`record-wanted`) and
   * of a member asking for ours (`record-asked`); and hears our own beacons (`own-beacon`).
   */
  bus: MemberBus
  membership: Membership
  /** Members' records, which rebuild whole beacons from their pulses. */
  beacons: MemberBeacons
  dialer: PeerDialer
  members: MemberRecords
  events: EventLog
  metrics: MetricsStore
  log: Logger
  /** How often the timeouts are applied. */
  tickMs: number
  /**
   * A partial mesh: tell the others when our own probe finds a member dead (protocols/verdicts.ts), since most
   * hold no connection to it. Verdicts heard are acted on either way.
   */
  verdicts: boolean
}

/**
 * Feeds the membership table from the mesh (beacons, leave events, disconnections), keeps every member dialled,
 * cuts the connections of members found dead (a wedged connection would keep the dialler from redialling after a
 * heal), records state changes in the store and the log, and announces our own leaving on stop.
 */
export class MembershipService {
  private readonly mesh: MembershipServiceComponents['mesh']
  private readonly bus: MemberBus
  private readonly membership: Membership
  private readonly beacons: MemberBeacons
  private readonly dialer: PeerDialer
  private readonly members: MemberRecords
  private readonly events: EventLog
  private readonly metrics: MetricsStore
  private readonly log: Logger
  private readonly tickMs: number
  private readonly verdicts: boolean
  /**
   * Members another's verdict made us probe, with the beacon it named: should our probe find one dead, the
   * others heard it already, so we say nothing (one verdict per death, not one per member). Members only.
   */
  private readonly heardVerdicts = new Map<string, MemberVerdict['about']>()
  private tickTimer: NodeJS.Timeout | undefined
  private flushTimer: NodeJS.Timeout | undefined

  constructor (components: MembershipServiceComponents) {
    this.mesh = components.mesh
    this.bus = components.bus
    this.membership = components.membership
    this.beacons = components.beacons
    this.dialer = components.dialer
    this.members = components.members
    this.events = components.events
    this.metrics = components.metrics
    this.log = components.log
    this.tickMs = components.tickMs
    this.verdicts = components.verdicts
  }

  async start (): Promise<void> {
    const { membership, members, dialer, mesh } = this
    const skipped = membership.restore(members.load())
    if (skipped > 0) this.log.warn({ skipped }, 'members remembered past membership.maxMembers were left out')
    membership.on('change', this.onChange)
    membership.on('reap', this.onReap)
    membership.on('refuse', this.onRefuse)
    mesh.node.addEventListener('peer:disconnect', this.onDisconnect)
    mesh.node.addEventListener('peer:connect', this.onConnect)
    this.bus.on('own-beacon', this.onOwnBeacon)
    mesh.subscribe(healthCodec, this.onBeacon)
    mesh.subscribe(systemEventCodec, this.onSystemEvent)
    mesh.subscribe(memberVerdictCodec, this.onVerdict)
    // Come back to everyone we knew before a restart, except those who said they left.
    for (const member of membership.list()) {
      if (member.peerId !== mesh.peerId.toString() && member.state !== 'left') await dialer.want(member.peerId, member.addrs, 'member')
    }
    this.tickTimer = setInterval(() => { membership.tick() }, this.tickMs)
    this.flushTimer = setInterval(() => { this.flush() }, FLUSH_INTERVAL_MS)
  }

  async stop (): Promise<void> {
    const { membership, mesh } = this
    clearInterval(this.tickTimer)
    clearInterval(this.flushTimer)
    mesh.node.removeEventListener('peer:disconnect', this.onDisconnect)
    mesh.node.removeEventListener('peer:connect', this.onConnect)
    mesh.unsubscribe(healthCodec, this.onBeacon)
    mesh.unsubscribe(systemEventCodec, this.onSystemEvent)
    mesh.unsubscribe(memberVerdictCodec, this.onVerdict)
    this.bus.off('own-beacon', this.onOwnBeacon)
    membership.off('change', this.onChange)
    membership.off('reap', this.onReap)
    membership.off('refuse', this.onRefuse)
    this.flush()
  }

  private flush (): void {
    const dirty = this.membership.takeDirty()
    if (dirty.length > 0) this.members.save(dirty)
  }

  private readonly onBeacon = (wire: HealthWire, from: PeerId): void => {
    const peerId = from.toString()
    if (wire.ask?.includes(this.mesh.peerId.toString()) === true) this.bus.emit('record-asked', peerId)
    if (this.beacons.shouldAsk(peerId, wire, Date.now())) this.bus.emit('record-wanted', peerId)
    const beacon = this.beacons.assemble(peerId, wire)
    if (beacon === null) return
    const before = this.membership.get(peerId)?.state
    const news = this.membership.observeBeacon(peerId, beacon)
    // Only the newest message's record is kept, and only a member's (a refused newcomer's is not).
    const latest = this.membership.isLatest(peerId, beacon)
    if (latest) this.beacons.keep(peerId, wire)
    if (news) {
      this.dialer.want(peerId, beacon.addrs, 'member').catch((err: unknown) => {
        this.log.debug({ err, peer: peerId }, 'member not dialable')
      })
      // Answered with an early beacon and our record: a newcomer, a new run, one back from dead or left. Not one
      // back from a blip (suspect): it knows us still, and every member answering every blip of every other was
      // O(N²) beacons on a loaded box.
      if (before !== 'suspect') this.bus.emit('member-met', peerId, before === undefined)
    }
    // Only the newest beacon speaks for the member: an older one arriving late must not undo a claim.
    if (latest) this.bus.emit('beacon', peerId, beacon)
  }

  /** Our own beacon, as sent: the table shows self with the figures the others see. */
  private readonly onOwnBeacon = (beacon: HealthBeacon): void => {
    this.membership.spoke()
    this.membership.updateSelf({ name: beacon.name, role: beacon.role, addrs: beacon.addrs, health: healthOf(beacon) })
  }

  private readonly onSystemEvent = (event: SystemEvent, from: PeerId): void => {
    if (event.type === 'member.leave') {
      this.membership.observeLeave(from.toString(), event)
      this.dialer.forget(from.toString())
    } else {
      this.log.info({ peer: from.toString(), userId: event.userId, username: event.username }, 'an operator registered on a member')
    }
  }

  /** Another member found one dead: we probe it now (see Membership.probeOnVerdict); about ourselves, nothing. */
  private readonly onVerdict = (verdict: MemberVerdict, from: PeerId): void => {
    // The same verdict again (a liar repeating it, or it came by two paths) brings no second probe.
    const heard = this.heardVerdicts.get(verdict.peerId)
    if (heard?.startedAt === verdict.about.startedAt && heard.seq === verdict.about.seq) return
    if (!this.membership.probeOnVerdict(verdict.peerId, verdict.about)) return
    this.heardVerdicts.set(verdict.peerId, verdict.about)
    this.log.debug({ peer: verdict.peerId, from: from.toString() }, 'a member says it found this one dead: probing it')
    this.bus.emit('probe-now', verdict.peerId)
  }

  /** Our own probe found `member` dead: in a partial mesh, say so, unless it was another's verdict that sent us. */
  private tellDeath (member: Member): void {
    const about = this.membership.beaconOf(member.peerId)
    const heard = this.heardVerdicts.get(member.peerId)
    this.heardVerdicts.delete(member.peerId)
    if (!this.verdicts || about === undefined || (heard?.startedAt === about.startedAt && heard.seq >= about.seq)) return
    this.mesh.publish(memberVerdictCodec, { v: 1, peerId: member.peerId, about }).catch((err: unknown) => {
      this.log.debug({ err, peer: member.peerId }, 'verdict not published')
    })
  }

  private readonly onConnect = (event: CustomEvent<PeerId>): void => {
    const peerId = event.detail.toString()
    if (this.membership.observeConnect(peerId)) this.bus.emit('probe-now', peerId)
  }

  private readonly onDisconnect = (event: CustomEvent<PeerId>): void => {
    const peerId = event.detail.toString()
    this.membership.observeDisconnect(peerId)
    this.bus.emit('probe-now', peerId)
  }

  private readonly onChange = ({ member, from, to, reason }: MemberChange): void => {
    this.log.info({ peer: member.peerId, name: member.name, from, to, reason }, `member ${member.name} is ${to}`)
    if (to === 'dead') {
      this.tellDeath(member)
      for (const connection of this.mesh.node.getConnections(peerIdFromString(member.peerId))) {
        connection.abort(new Error(`member ${member.name} is dead: ${reason}`))
      }
    }
    this.events.record('member.state', member.peerId, { name: member.name, from, to, reason })
    this.members.save([member])
  }

  /** A newcomer's beacon found the table full: counted with the beacon topic's refusals, never dialled or stored. */
  private readonly onRefuse = ({ peerId, name, reason }: MemberRefusal): void => {
    this.metrics.inc(REJECTED_METRIC, { topic: healthCodec.topic, reason })
    this.log.debug({ peer: peerId, name, reason }, 'refused a newcomer: the member table is full')
  }

  private readonly onReap = (member: Member): void => {
    this.heardVerdicts.delete(member.peerId)
    this.beacons.forget(member.peerId)
    this.dialer.forget(member.peerId)
    this.members.remove([member.peerId])
    this.events.record('member.reaped', member.peerId, { name: member.name, state: member.state })
  }
}
