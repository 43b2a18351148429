import type { Connection, Stream } from '@libp2p/interface'
import { MEMBER_PING_PROTOCOL, MEMBER_PING_STREAM_MS } from '../mesh/mesh.ts'
import type { MeshNode } from '../mesh/mesh.ts'
import type { Membership } from './membership.ts'

const PING_LENGTH = 32
/** Inbound ping streams per connection, as libp2p's own ping allows: one in use and one replacing it. */
const MAX_INBOUND_STREAMS = 2

export interface PingResponderComponents {
  node: Pick<MeshNode, 'handle' | 'unhandle'>
  membership: Pick<Membership, 'heardPing'>
  /** How long a stream is served; `MEMBER_PING_STREAM_MS` but in tests. */
  streamMs?: number
}

/**
 * Answers members' pings on `MEMBER_PING_PROTOCOL`: each 32 bytes echoed, as libp2p's ping does, over a stream
 * kept up to `MEMBER_PING_STREAM_MS`. Each ping also tells the membership that its sender spoke: a member that
 * pings us shows what our own ping to it would, so a pair of members no longer pings both ways (at N=16, each
 * member pinged each other one about once between beacons, in each direction).
 */
export class PingResponder {
  private readonly node: PingResponderComponents['node']
  private readonly membership: PingResponderComponents['membership']
  private readonly streamMs: number
  private readonly open = new Set<Stream>()

  constructor (components: PingResponderComponents) {
    this.node = components.node
    this.membership = components.membership
    this.streamMs = components.streamMs ?? MEMBER_PING_STREAM_MS
  }

  async start (): Promise<void> {
    await this.node.handle(MEMBER_PING_PROTOCOL, this.onStream, { maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: 1, runOnLimitedConnection: true })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(MEMBER_PING_PROTOCOL)
    for (const stream of this.open) stream.abort(new Error('stopping'))
    this.open.clear()
  }

  private readonly onStream = (stream: Stream, connection: Connection): void => {
    const peer = connection.remotePeer.toString()
    this.open.add(stream)
    const expiry = setTimeout(() => { stream.abort(new Error('ping stream open too long')) }, this.streamMs)
    expiry.unref()
    let unanswered = 0
    stream.addEventListener('message', (event) => {
      const chunk = event.data instanceof Uint8Array ? event.data : event.data.subarray()
      // A pinger waits for each echo, so the send buffer only fills for one that sends without reading:
      // it loses the stream rather than have us buffer for it.
      try {
        if (!stream.send(chunk)) { stream.abort(new Error('ping echoes not read')); return }
      } catch (err) {
        stream.abort(err as Error) // closed for writing by the pinger: nothing to answer on
        return
      }
      unanswered += chunk.byteLength
      if (unanswered < PING_LENGTH) return
      unanswered %= PING_LENGTH
      this.membership.heardPing(peer)
    })
    stream.addEventListener('close', () => {
      clearTimeout(expiry)
      this.open.delete(stream)
    })
  }
}
