import { lpStream } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { MEMBER_SYNC_PROTOCOL, memberSyncCodec } from '../../protocols/member-sync.ts'
import type { MemberSyncMessage } from '../../protocols/member-sync.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import type { HealthBeacon, HealthWire } from '../../protocols/health.ts'
import type { MemberBus } from '../membership/bus.ts'
import { multiaddrText } from '../../common/text.ts'
import type { PeerDialer } from './dialer.ts'
import type { Logger } from '../../common/logger.ts'
import { isLive } from '../membership/membership.ts'
import type { Membership } from '../membership/membership.ts'
import type { MeshNode } from './mesh.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import type { JsonCodec } from '../../protocols/codec.ts'

const EXCHANGE_TIMEOUT_MS = 5_000

/** At most 8 addresses, each one the receiver takes: one odd address must not void the whole list there. */
const sendable = (addrs: string[]): string[] => addrs.filter((a) => multiaddrText.safeParse(a).success).slice(0, 8)

export interface MemberSyncComponents {
  node: MeshNode
  membership: Membership
  dialer: PeerDialer
  /** Our own beacons come on it (`own-beacon`): the last one goes with each exchange. */
  bus: MemberBus
  /** Where a peer's own beacon goes: to the health topic's readers, as if gossip had brought it (Mesh.deliver). */
  deliver: (wire: HealthWire, from: PeerId) => void
  metrics: MetricsStore
  log: Logger
}

/**
 * Swaps member lists, and each side's own beacon, with every newly connected peer, and has the dialer connect to
 * the members it learns.
 */
export class MemberSync {
  private readonly node: MeshNode
  private readonly membership: Membership
  private readonly dialer: PeerDialer
  private readonly bus: MemberBus
  private readonly deliver: MemberSyncComponents['deliver']
  private readonly metrics: MetricsStore
  private readonly log: Logger
  private ownBeacon: HealthBeacon | undefined
  /** Connections that had their exchange: one each (the side that dialled starts it), so a peer cannot loop. */
  private readonly exchanged = new WeakSet<Connection>()

  constructor (components: MemberSyncComponents) {
    this.node = components.node
    this.membership = components.membership
    this.dialer = components.dialer
    this.bus = components.bus
    this.deliver = components.deliver
    this.metrics = components.metrics
    this.log = components.log
  }

  async start (): Promise<void> {
    this.bus.on('own-beacon', this.onOwnBeacon)
    await this.node.handle(MEMBER_SYNC_PROTOCOL, this.onStream, { maxInboundStreams: 8, maxOutboundStreams: 8 })
    this.node.addEventListener('connection:open', this.onConnectionOpen)
  }

  async stop (): Promise<void> {
    this.node.removeEventListener('connection:open', this.onConnectionOpen)
    await this.node.unhandle(MEMBER_SYNC_PROTOCOL)
    this.bus.off('own-beacon', this.onOwnBeacon)
  }

  private readonly onOwnBeacon = (beacon: HealthBeacon): void => {
    this.ownBeacon = beacon
  }

  /**
   * Whose whereabouts we can vouch for: members neither dead nor gone, at the addresses their beacons gave, and
   * every connected peer, at the addresses identify learnt; less the peer we are telling, and ourselves.
   */
  async knownMembers (except: PeerId): Promise<MemberSyncMessage['members']> {
    const skip = new Set([except.toString(), this.node.peerId.toString()])
    const out = new Map<string, string[]>()
    for (const m of this.membership.list()) {
      const addrs = sendable(m.addrs)
      if (isLive(m.state) && addrs.length > 0 && !skip.has(m.peerId)) out.set(m.peerId, addrs)
    }
    for (const { remotePeer } of this.node.getConnections()) {
      const id = remotePeer.toString()
      if (out.has(id) || skip.has(id)) continue
      const peer = await this.node.peerStore.get(remotePeer).catch(() => undefined)
      const addrs = sendable((peer?.addresses ?? []).map((a) => a.multiaddr.toString()))
      if (addrs.length > 0) out.set(id, addrs)
    }
    return [...out].slice(0, 1024).map(([peerId, addrs]) => ({ peerId, addrs }))
  }

  /** The encoded list we send to `peer`. */
  private async ourList (peer: PeerId): Promise<Uint8Array> {
    const own = this.ownBeacon
    const self = own === undefined ? {} : { self: Buffer.from(healthCodec.encode(beaconMessage(own))).toString('base64') }
    return memberSyncCodec.encode({ v: 1, members: await this.knownMembers(peer), ...self })
  }

  private readonly onConnectionOpen = (event: CustomEvent<Connection>): void => {
    const connection = event.detail
    // One exchange per pair of peers: the side that dialled starts it.
    if (connection.direction !== 'outbound') return
    this.exchange(connection).catch((err: unknown) => {
      this.log.debug({ err: (err as Error).message, peer: connection.remotePeer.toString() }, 'member sync failed')
    })
  }

  private async exchange (connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)
    const stream = await connection.newStream(MEMBER_SYNC_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: memberSyncCodec.maxBytes })
    await lp.write(await this.ourList(connection.remotePeer), { signal })
    this.receive((await lp.read({ signal })).subarray(), connection.remotePeer)
    await stream.close({ signal })
  }

  private readonly onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    if (this.exchanged.has(connection)) {
      this.metrics.inc(REJECTED_METRIC, { topic: MEMBER_SYNC_PROTOCOL, reason: 'repeated' })
      stream.abort(new Error('one member sync per connection'))
      return
    }
    this.exchanged.add(connection)
    const signal = AbortSignal.timeout(EXCHANGE_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: memberSyncCodec.maxBytes })
      const theirs = (await lp.read({ signal })).subarray()
      await lp.write(await this.ourList(connection.remotePeer), { signal })
      this.receive(theirs, connection.remotePeer)
      await stream.close({ signal })
    } catch (err) {
      this.log.debug({ err: (err as Error).message, peer: connection.remotePeer.toString() }, 'member sync failed')
      stream.abort(err as Error)
    }
  }

  /**
   * `bytes` read with `codec`, or undefined: a refusal is counted under `topic` (where the same message would be
   * counted had it come another way) and logged as `what`.
   */
  private read<T> (codec: JsonCodec<T>, bytes: Uint8Array, topic: string, from: PeerId, what: string): T | undefined {
    const decoded = codec.decode(bytes)
    if (decoded.ok) return decoded.value
    this.metrics.inc(REJECTED_METRIC, { topic, reason: decoded.reason })
    this.log.debug({ peer: from.toString(), reason: decoded.reason, detail: decoded.detail }, `${what} refused`)
    return undefined
  }

  private receive (bytes: Uint8Array, from: PeerId): void {
    const list = this.read(memberSyncCodec, bytes, MEMBER_SYNC_PROTOCOL, from, 'member list')
    if (list === undefined) return
    // The peer's own beacon: checked as the health topic checks it, refusals counted there.
    const beacon = list.self === undefined ? undefined : this.read(healthCodec, Buffer.from(list.self, 'base64'), healthCodec.topic, from, 'beacon in member sync')
    if (beacon !== undefined) this.deliver(beacon, from)
    for (const { peerId, addrs } of list.members) {
      // Those that said they left stay unwanted until they come back themselves.
      if (this.membership.get(peerId)?.state === 'left') continue
      this.dialer.want(peerId, addrs).catch((err: unknown) => {
        this.log.debug({ err: (err as Error).message, peer: peerId }, 'member from sync not dialable')
      })
    }
  }
}
