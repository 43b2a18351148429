import type { Connection, Stream } from '@libp2p/interface'
import { MEMBER_PING_PROTOCOL, MEMBER_PING_STREAM_MS, PING_LENGTH } from '../mesh/mesh.ts'
import type { MeshNode } from '../mesh/mesh.ts'
import type { Membership } from './membership.ts'

/** Inbound ping streams per connection, as libp2p's own ping allows: one in use and one replacing it. */
const MAX_INBOUND_STREAMS = 2
/**
 * Echoes queued on one stream at most. A pinger waits for each echo, so only one that sends without reading
 * gets past a few: it loses the stream rather than have us buffer for it. A queue alone proves nothing: while
 * the connection's socket is full, every stream on it queues until it drains.
 */
export const MAX_QUEUED_ECHO_BYTES = 64 * PING_LENGTH

export interface PingResponderComponents {
  node: Pick<MeshNode, 'handle' | 'unhandle'>
  membership: Pick<Membership, 'heardPing'>
  /** How long a stream is served; `MEMBER_PING_STREAM_MS` but in tests. */
  streamMs?: number
}

/**
 * Answers members' pings on `MEMBER_PING_PROTOCOL`: each 32 bytes echoed, as libp2p's ping does, over a stream
 * kept up to `MEMBER_PING_STREAM_MS`. Each ping also tells the membership that its sender spoke: a member that
 * pings us shows what our own ping to it would, so a pair of members pings one way only (`pairLeader`).
 */
export class PingResponder {
  private readonly node: PingResponderComponents['node']
  private readonly membership: PingResponderComponents['membership']
  private readonly streamMs: number

  constructor (components: PingResponderComponents) {
    this.node = components.node
    this.membership = components.membership
    this.streamMs = components.streamMs ?? MEMBER_PING_STREAM_MS
  }

  async start (): Promise<void> {
    await this.node.handle(MEMBER_PING_PROTOCOL, this.onStream, { maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: 1, runOnLimitedConnection: true })
  }

  /**
   * Takes no new stream. Those open stay until the mesh stops: a ping in flight while the agent announces its
   * leave is still answered, so it is not taken for a silent member just before it leaves.
   */
  async stop (): Promise<void> {
    await this.node.unhandle(MEMBER_PING_PROTOCOL)
  }

  private readonly onStream = (stream: Stream, connection: Connection): void => {
    const peer = connection.remotePeer.toString()
    const expiry = setTimeout(() => { stream.abort(new Error('ping stream open too long')) }, this.streamMs)
    expiry.unref()
    let unanswered = 0
    stream.addEventListener('message', (event) => {
      const chunk = event.data instanceof Uint8Array ? event.data : event.data.subarray()
      try {
        stream.send(chunk)
      } catch (err) {
        stream.abort(err as Error) // closed for writing: nothing to answer on
        return
      }
      if (stream.writeBufferLength > MAX_QUEUED_ECHO_BYTES) { stream.abort(new Error('ping echoes not read')); return }
      unanswered += chunk.byteLength
      if (unanswered < PING_LENGTH) return
      unanswered %= PING_LENGTH
      this.membership.heardPing(peer)
    })
    // A pinger that closes its side after a ping (as libp2p's ping() does) gets the stream closed, not held.
    stream.addEventListener('remoteCloseWrite', () => { stream.close().catch(() => {}) })
    stream.addEventListener('close', () => { clearTimeout(expiry) })
  }
}
