import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub, Message } from '@libp2p/gossipsub'
import type { RPC } from '@libp2p/gossipsub/message'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { createHash } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import type { MessageCodec } from '../../protocols/codec.ts'
import { GOSSIP_CODECS } from '../../protocols/gossip-codecs.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { GossipValidator } from '../../protocols/validator.ts'
import type { ResolvedConfig } from '../config/config.ts'
import type { Component } from '../../common/component.ts'
import type { Logger } from '../../common/logger.ts'
import type { MetricsStore } from '../metrics/metrics.ts'

export type MeshNode = Libp2p<{ identify: Identify, ping: Ping, pubsub: GossipSub }>

/**
 * Members ping each other (membership/ping-streams.ts, ping-responder.ts) with libp2p's ping protocol under our
 * name (32 bytes echoed), our responder keeping a stream for `MEMBER_PING_STREAM_MS` instead of libp2p's 10 s.
 * At 10 s, the streams to 15 members were reopened twice a second, each a negotiation of several frames each way:
 * a fifth of an idle agent's CPU at N=16 (3.45 → 2.75 % of a core). Agents without it are pinged with
 * `/ipfs/ping/1.0.0`, which multistream-select falls back to, and which we still answer.
 */
export const MEMBER_PING_PROTOCOL = '/noodle/ping/1.0.0'
export const MEMBER_PING_STREAM_MS = 600_000
/** The bytes of one ping, echoed: as libp2p's ping protocol has them. */
export const PING_LENGTH = 32

/** mDNS service name of Noodle agents: other libp2p software on the LAN (IPFS…) is not even asked. */
export const MDNS_SERVICE_TAG = '_noodle._udp.local'

export interface MeshComponents {
  config: ResolvedConfig
  privateKey: PrivateKey
  swarmKey: Uint8Array
  metrics: MetricsStore
  log: Logger
}

type Handler = (value: any, from: PeerId) => void

/** A signed message's id: the first 8 bytes of SHA-256(sender's peer id ‖ sequence number). */
export function shortMessageId (msg: Message): Uint8Array {
  if (msg.type !== 'signed') throw new Error('Noodle gossip is always signed')
  const digest = createHash('sha256').update(msg.from.toMultihash().bytes).update(msg.sequenceNumber.toString(16)).digest()
  return new Uint8Array(digest.buffer, digest.byteOffset, 8)
}

/**
 * A received message's key for gossipsub's first duplicate check, which comes before the signature is verified:
 * the sender and sequence number as sent, the two facts `shortMessageId` hashes. Without it gossipsub verified
 * every copy's signature (a forwarded message comes once from each mesh peer) and only then found it seen. A
 * copy is only ever matched with a message that passed verification, so a forged one gains nothing; one that
 * lacks either field fails verification anyway ('' is never recorded).
 */
export function fastMessageId (msg: RPC.Message): string {
  if (msg.from == null || msg.seqno == null) return ''
  return `${Buffer.from(msg.from).toString('base64')}/${Buffer.from(msg.seqno).toString('base64')}`
}

/**
 * The libp2p node: TCP + Noise + Yamux inside a private network (pnet swarm key), mDNS and bootstrap discovery,
 * and gossipsub with strict signing. Other components publish and subscribe through it with codecs, so every
 * message in and out passes its topic's schema.
 */
export class Mesh {
  readonly node: MeshNode
  private readonly validator: GossipValidator
  /** Per topic read, its handlers: the topic is subscribed while it has one. */
  private readonly handlers = new Map<string, Set<Handler>>()
  private readonly log: Logger
  private started = false

  private constructor (node: MeshNode, validator: GossipValidator, log: Logger) {
    this.node = node
    this.validator = validator
    this.log = log
  }

  static async create ({ config, privateKey, swarmKey, metrics, log }: MeshComponents): Promise<Mesh> {
    const discovery = []
    if (config.mdns.enabled) {
      discovery.push(mdns({ interval: config.mdns.intervalMs, serviceTag: MDNS_SERVICE_TAG }))
    }
    if (config.bootstrap.length > 0) {
      discovery.push(bootstrap({ list: config.bootstrap, timeout: 0 }))
    }
    const node = await createLibp2p({
      start: false,
      privateKey,
      addresses: { listen: config.listen },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: preSharedKey({ psk: swarmKey }),
      // libp2p refuses a host's 6th inbound connection within a second. A site whose boxes come back together
      // after a power cut, or agents sharing one host or NAT, join faster than that; a connection that lacks
      // the swarm key is still dropped at the first byte.
      connectionManager: { inboundConnectionThreshold: 64, maxIncomingPendingConnections: 64 },
      // libp2p's connection monitor opens a ping stream on every connection every 10 s: with 15 peers, 3 streams a
      // second to negotiate, log and record, a third of an idle agent's CPU once beacons are rare (bench/idle-profile).
      // Membership does that job already (beacons, then our own probes when a member falls silent), and aborts a
      // dead member's connections.
      connectionMonitor: { enabled: false },
      peerDiscovery: discovery,
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          globalSignaturePolicy: 'StrictSign',
          emitSelf: false,
          fallbackToFloodsub: false,
          // A lone agent still beacons: nobody hears it yet, which is not an error.
          allowPublishToZeroTopicPeers: true,
          metricsRegister: metrics,
          metricsTopicStrToLabel: new Map(Object.values(TOPICS).map((t) => [t, t])),
          // Only our topics are taken in: gossipsub counts and caches a message by its topic before it checks the
          // subscription, so a member sending on made-up topics would grow a metric series (and cache entries) each.
          allowedTopics: Object.values(TOPICS),
          // Every member keeps a direct connection to every other (PeerDialer, MemberSync), and flood publish
          // hands each message to every connected subscriber first-hand, so by default (degree 0) nothing is
          // forwarded: at N=8, forwarding (D=2) made each beacon arrive ~3 times and cost 2.6× the bytes (bench/mesh).
          // A member that cannot be reached directly still gets every message through gossip repair (each
          // heartbeat announces the last heartbeat's message ids to a few peers, who pull what they lack), or
          // first-hand through others when the operator raises the degree.
          D: config.gossip.degree,
          // A mesh is only grown while smaller than Dlo, so Dlo must stay ≥ 1 whenever there is a mesh at all.
          Dlo: config.gossip.degree === 0 ? 0 : Math.max(1, config.gossip.degree - 1),
          Dhi: config.gossip.degree === 0 ? 0 : config.gossip.degree + 1,
          Dout: 0,
          Dlazy: 3,
          mcacheGossip: 1,
          // Message ids travel in every repair announcement (IHAVE): 8 bytes of a hash of sender and sequence
          // number instead of gossipsub's 46-byte sender key + number. 2⁶⁴ ids leave no practical collision
          // within the seen-cache's two minutes.
          msgIdFn: shortMessageId,
          fastMsgIdFn: fastMessageId,
          // Gossipsub penalises many peers behind one IP, a defence for open networks. In this mesh every peer
          // holds the swarm key, and many behind one IP is normal (one NAT, or agents on one host): with 15 such
          // peers the penalty graylisted them all and the mesh fell apart (seen in bench/mesh at N=16).
          scoreParams: { IPColocationFactorWeight: 0 }
        })
      }
    })
    const mesh = new Mesh(node, new GossipValidator({ metrics, log }), log)
    // Every topic a member speaks is checked from now until exit, read here or not: gossipsub caches and forwards
    // a message on a topic nobody here reads yet (or any more) just the same, and it must not do so unchecked.
    for (const codec of GOSSIP_CODECS.values()) mesh.validate(codec)
    return mesh
  }

  get peerId (): PeerId {
    return this.node.peerId
  }

  /**
   * Reads a topic: messages that pass the codec's checks reach `handler` (decoded once, whatever the number of
   * handlers), the rest are counted and dropped. Works before and after start(): the topic is subscribed with its
   * first handler. Throws TopicCodecError for a codec other than the topic's own (see GOSSIP_CODECS).
   */
  subscribe<T> (codec: MessageCodec<T>, handler: (value: T, from: PeerId) => void): void {
    this.validate(codec)
    const handlers = this.handlers.get(codec.topic)
    if (handlers !== undefined) {
      handlers.add(handler)
      return
    }
    this.handlers.set(codec.topic, new Set([handler]))
    // Before start, start() subscribes (gossipsub refuses a subscription until it runs).
    if (this.started) this.node.services.pubsub.subscribe(codec.topic)
  }

  /** Undoes subscribe(): with its last handler gone, the topic is no longer read here (but still validated). */
  unsubscribe<T> (codec: MessageCodec<T>, handler: (value: T, from: PeerId) => void): void {
    const handlers = this.handlers.get(codec.topic)
    if (handlers?.delete(handler) !== true || handlers.size > 0) return
    this.handlers.delete(codec.topic)
    if (this.started) this.node.services.pubsub.unsubscribe(codec.topic)
  }

  /** A component that reads `codec`'s topic from its start to its stop: for a reader with no start() of its own. */
  reader<T> (codec: MessageCodec<T>, handler: (value: T, from: PeerId) => void): Component {
    return {
      start: () => { this.subscribe(codec, handler) },
      stop: () => { this.unsubscribe(codec, handler) }
    }
  }

  /** Checks `codec`'s topic with it for as long as the mesh lives; throws TopicCodecError if the topic has another. */
  private validate (codec: MessageCodec<any>): void {
    this.validator.add(codec)
    this.node.services.pubsub.topicValidators.set(codec.topic, this.validator.validate)
  }

  async publish<T> (codec: MessageCodec<T>, value: T): Promise<void> {
    await this.node.services.pubsub.publish(codec.topic, codec.encode(value))
  }

  async start (): Promise<void> {
    this.node.services.pubsub.addEventListener('message', this.onMessage)
    await this.node.start()
    this.started = true
    for (const topic of this.handlers.keys()) this.node.services.pubsub.subscribe(topic)
    this.log.info({ peerId: this.peerId.toString(), addrs: this.node.getMultiaddrs().map(String) }, 'mesh started')
  }

  async stop (): Promise<void> {
    this.started = false
    this.node.services.pubsub.removeEventListener('message', this.onMessage)
    await this.node.stop()
  }

  /**
   * A message its author handed us itself, over a stream of its own (member sync): the connection authenticates
   * the author as gossip's signature does, so it goes to the topic's readers as a gossip message would. `value`
   * must come from `codec.decode`: the topic's own checks and limits.
   */
  deliver<T> (codec: MessageCodec<T>, value: T, from: PeerId): void {
    this.handOut(codec.topic, value, from)
  }

  private readonly onMessage = (event: CustomEvent<Message>): void => {
    const msg = event.detail
    const value = this.validator.take(msg)
    if (value === undefined || msg.type !== 'signed') return
    this.handOut(msg.topic, value, msg.from)
  }

  private handOut (topic: string, value: unknown, from: PeerId): void {
    for (const handler of this.handlers.get(topic) ?? []) {
      try {
        handler(value, from)
      } catch (err) {
        // A handler bug must not take the gossip loop, nor the topic's other handlers, down with it.
        this.log.error({ err, topic }, 'gossip handler failed')
      }
    }
  }
}
