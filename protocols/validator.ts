import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { TopicCodecError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import type { MessageCodec } from './codec.ts'

/** Counter of messages from peers that our validators refused, by reason and topic (or stream protocol). */
export const REJECTED_METRIC = 'noodle_gossip_rejected_total'

/** Where refusals are counted: the agent's metrics registry; declared here so protocols/ needs nothing of agent/. */
export interface RejectionCounter {
  inc (name: string, labels: Record<string, string>): void
}

/**
 * Gossipsub's per-topic validator for every topic we read. A message that fails is refused before gossipsub
 * forwards it or hands it to the agent (and gossipsub lowers the score of the peer that sent it). The decoded
 * value of an accepted message is kept so that the handler does not parse the bytes a second time.
 */
export class GossipValidator {
  private readonly codecs = new Map<string, MessageCodec<any>>()
  private readonly decoded = new WeakMap<Message, unknown>()
  private readonly metrics: RejectionCounter
  private readonly log: Logger

  constructor (components: { metrics: RejectionCounter, log: Logger }) {
    this.metrics = components.metrics
    this.log = components.log
  }

  /** Validates `codec`'s topic with it from now on; throws TopicCodecError if the topic already has another codec. */
  add (codec: MessageCodec<any>): void {
    const registered = this.codecs.get(codec.topic)
    if (registered !== undefined && registered !== codec) throw new TopicCodecError(codec.topic)
    this.codecs.set(codec.topic, codec)
  }

  readonly validate = (propagationSource: PeerId, msg: Message): TopicValidatorResult => {
    const codec = this.codecs.get(msg.topic)
    if (codec == null) return TopicValidatorResult.Ignore
    if (msg.type !== 'signed') return this.reject(msg.topic, 'unsigned', propagationSource, 'message is not signed')
    const result = codec.decode(msg.data)
    if (!result.ok) return this.reject(msg.topic, result.reason, propagationSource, result.detail)
    this.decoded.set(msg, result.value)
    return TopicValidatorResult.Accept
  }

  /** The value of a message this validator accepted; undefined for any other message. */
  take (msg: Message): unknown {
    return this.decoded.get(msg)
  }

  private reject (topic: string, reason: string, from: PeerId, detail: string): TopicValidatorResult {
    this.metrics.inc(REJECTED_METRIC, { topic, reason })
    this.log.debug({ topic, reason, from: from.toString(), detail }, 'rejected gossip message')
    return TopicValidatorResult.Reject
  }
}
