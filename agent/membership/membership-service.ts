import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { systemEventCodec } from '../../protocols/events.ts'
import type { SystemEvent } from '../../protocols/events.ts'
import { healthCodec } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import type { PeerDialer } from '../mesh/dialer.ts'
import type { Logger } from '../../common/logger.ts'
import type { Membership, MemberChange, Member, MemberRefusal } from './membership.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import type { EventLog } from '../store/event-log.ts'
import type { MemberRecords } from './member-records.ts'

/** How often the store gets the latest member figures: state changes are written at once, health in batches. */
const FLUSH_INTERVAL_MS = 5_000
/** Time the leave announcement gets to leave the box before the connections close. */
const LEAVE_GRACE_MS = 150

export interface MembershipServiceComponents {
  mesh: Mesh
  membership: Membership
  dialer: PeerDialer
  members: MemberRecords
  events: EventLog
  metrics: MetricsStore
  log: Logger
  startedAt: number
  /** How often the timeouts are applied. */
  tickMs: number
  /** A member joined or came back: answer with our own beacon. */
  onNews: () => void
  /** Every valid beacon that is the member's newest, after the table took it (the election reads claims from them). */
  onBeacon: (peerId: string, beacon: HealthBeacon) => void
  /** Every connection to a member closed: ping it now (a dead process refuses at once). */
  onDisconnect: () => void
}

/**
 * Feeds the membership table from the mesh (beacons, leave events, disconnections), keeps every member dialled,
 * cuts the connections of members found dead (a wedged connection would keep the dialler from redialling after a
 * heal), records state changes in the store and the log, and announces our own leaving on stop.
 */
export class MembershipService {
  private readonly c: MembershipServiceComponents
  private tickTimer: NodeJS.Timeout | undefined
  private flushTimer: NodeJS.Timeout | undefined

  constructor (components: MembershipServiceComponents) {
    this.c = components
    components.mesh.subscribe(healthCodec, (beacon, from) => { this.onBeacon(beacon, from) })
    components.mesh.subscribe(systemEventCodec, (event, from) => { this.onSystemEvent(event, from) })
  }

  async start (): Promise<void> {
    const { membership, members, dialer, mesh } = this.c
    const skipped = membership.restore(members.load())
    if (skipped > 0) this.c.log.warn({ skipped }, 'members remembered past membership.maxMembers were left out')
    membership.on('change', this.onChange)
    membership.on('reap', this.onReap)
    membership.on('refuse', this.onRefuse)
    mesh.node.addEventListener('peer:disconnect', this.onDisconnect)
    // Come back to everyone we knew before a restart, except those who said they left.
    for (const member of membership.list()) {
      if (member.peerId !== mesh.peerId.toString() && member.state !== 'left') await dialer.want(member.peerId, member.addrs, 'member')
    }
    this.tickTimer = setInterval(() => { membership.tick() }, this.c.tickMs)
    this.flushTimer = setInterval(() => { this.flush() }, FLUSH_INTERVAL_MS)
  }

  async stop (): Promise<void> {
    const { membership, mesh, log } = this.c
    clearInterval(this.tickTimer)
    clearInterval(this.flushTimer)
    mesh.node.removeEventListener('peer:disconnect', this.onDisconnect)
    try {
      await mesh.publish(systemEventCodec, { v: 1, type: 'member.leave', at: Date.now(), startedAt: this.c.startedAt })
      await new Promise((resolve) => setTimeout(resolve, LEAVE_GRACE_MS))
    } catch (err) {
      log.warn({ err }, 'leave not announced')
    }
    membership.off('change', this.onChange)
    membership.off('reap', this.onReap)
    membership.off('refuse', this.onRefuse)
    this.flush()
  }

  private flush (): void {
    const dirty = this.c.membership.takeDirty()
    if (dirty.length > 0) this.c.members.save(dirty)
  }

  private onBeacon (beacon: HealthBeacon, from: PeerId): void {
    const peerId = from.toString()
    if (this.c.membership.observeBeacon(peerId, beacon)) {
      this.c.dialer.want(peerId, beacon.addrs, 'member').catch((err: unknown) => {
        this.c.log.debug({ err, peer: peerId }, 'member not dialable')
      })
      this.c.onNews()
    }
    // Only the newest beacon speaks for the member: an older one arriving late must not undo a claim.
    if (this.c.membership.isLatest(peerId, beacon)) this.c.onBeacon(peerId, beacon)
  }

  private onSystemEvent (event: SystemEvent, from: PeerId): void {
    if (event.type === 'member.leave') {
      this.c.membership.observeLeave(from.toString(), event)
      this.c.dialer.forget(from.toString())
    } else {
      this.c.log.info({ peer: from.toString(), userId: event.userId, username: event.username }, 'an operator registered on a member')
    }
  }

  private readonly onDisconnect = (event: CustomEvent<PeerId>): void => {
    this.c.membership.observeDisconnect(event.detail.toString())
    this.c.onDisconnect()
  }

  private readonly onChange = ({ member, from, to, reason }: MemberChange): void => {
    this.c.log.info({ peer: member.peerId, name: member.name, from, to, reason }, `member ${member.name} is ${to}`)
    if (to === 'dead') {
      for (const connection of this.c.mesh.node.getConnections(peerIdFromString(member.peerId))) {
        connection.abort(new Error(`member ${member.name} is dead: ${reason}`))
      }
    }
    this.c.events.record('member.state', member.peerId, { name: member.name, from, to, reason })
    this.c.members.save([member])
  }

  /** A newcomer's beacon found the table full: counted with the beacon topic's refusals, never dialled or stored. */
  private readonly onRefuse = ({ peerId, name, reason }: MemberRefusal): void => {
    this.c.metrics.inc(REJECTED_METRIC, { topic: healthCodec.topic, reason })
    this.c.log.debug({ peer: peerId, name, reason }, 'refused a newcomer: the member table is full')
  }

  private readonly onReap = (member: Member): void => {
    this.c.dialer.forget(member.peerId)
    this.c.members.remove([member.peerId])
    this.c.events.record('member.reaped', member.peerId, { name: member.name, state: member.state })
  }
}
