import type { PeerId, Stream } from '@libp2p/interface'
import { MEMBER_PING_PROTOCOL, MEMBER_PING_STREAM_MS, PING_LENGTH } from '../mesh/mesh.ts'
import type { MeshNode } from '../mesh/mesh.ts'

/** libp2p's ping protocol: the peer echoes each 32 bytes back, for as long as the stream stays open. */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
/**
 * How long we keep a stream of each protocol: less than its responder's limit (its TIMEOUT aborts the stream that
 * long after it opened), so a ping is never cut by it (a cut ping would read as a member that does not answer).
 */
export const MAX_STREAM_AGE_MS_BY_PROTOCOL: Readonly<Record<string, number>> = {
  [MEMBER_PING_PROTOCOL]: MEMBER_PING_STREAM_MS - 10_000,
  [PING_PROTOCOL]: 8_000
}

interface Open {
  stream: Stream
  openedAt: number
  /** By the protocol the member chose: see `MAX_STREAM_AGE_MS_BY_PROTOCOL`. */
  maxAgeMs: number
}

/**
 * Pings members over one stream each, kept open between pings. A ping on a new stream (libp2p's `ping()`) opens
 * and negotiates it, sends 32 bytes each way and closes it: 1445 bytes in 17 packets on the wire, more than three
 * health pulses; on an open stream it is the 32 bytes each way in their frames. Members of a larger mesh are
 * pinged between beacons (docs/gossip.md), so this is most of what liveness costs there.
 */
export class PingStreams {
  private readonly node: Pick<MeshNode, 'dialProtocol'>
  private readonly open = new Map<string, Open>()
  private readonly now: () => number

  constructor (components: { node: Pick<MeshNode, 'dialProtocol'>, now?: () => number }) {
    this.node = components.node
    this.now = components.now ?? Date.now
  }

  /** Round-trip time in ms; rejects as libp2p's ping does (a refused dial, a timeout, a reset stream). */
  async ping (peer: PeerId, options: { signal: AbortSignal }): Promise<number> {
    const { stream } = await this.streamTo(peer, options.signal)
    const data = crypto.getRandomValues(new Uint8Array(PING_LENGTH))
    const start = this.now()
    try {
      await new Promise<void>((resolve, reject) => {
        const received: Uint8Array[] = []
        let length = 0
        const done = (err?: Error) => {
          stream.removeEventListener('message', onMessage)
          stream.removeEventListener('close', onClose)
          options.signal.removeEventListener('abort', onAbort)
          if (err === undefined) resolve()
          else reject(err)
        }
        const onMessage = (event: { data: Uint8Array | { subarray: () => Uint8Array } }) => {
          const chunk = event.data instanceof Uint8Array ? event.data : event.data.subarray()
          received.push(chunk)
          length += chunk.byteLength
          if (length < PING_LENGTH) return
          const echoed = Buffer.concat(received)
          done(length === PING_LENGTH && Buffer.from(data).equals(echoed) ? undefined : new Error('ping answered with other bytes'))
        }
        const onClose = () => { done(new Error('ping stream closed')) }
        const onAbort = () => { done(options.signal.reason instanceof Error ? options.signal.reason : new Error('ping timed out')) }
        if (options.signal.aborted) { onAbort(); return }
        stream.addEventListener('message', onMessage)
        stream.addEventListener('close', onClose)
        options.signal.addEventListener('abort', onAbort)
        stream.send(data)
      })
      return this.now() - start
    } catch (err) {
      // Whatever was in flight (a late answer) must not be read by the next ping: that one opens a new stream.
      this.drop(peer.toString(), err as Error)
      throw err
    }
  }

  /** Closes every stream (the agent stops). */
  stop (): void {
    for (const key of [...this.open.keys()]) this.drop(key, new Error('stopping'))
  }

  private async streamTo (peer: PeerId, signal: AbortSignal): Promise<Open> {
    const key = peer.toString()
    const current = this.open.get(key)
    if (current !== undefined && current.stream.status === 'open' && this.now() - current.openedAt < current.maxAgeMs) return current
    // At once, not gracefully: libp2p allows one outbound ping stream per connection, and no ping is in flight
    // on it (the membership never has two probes out to one member).
    if (current !== undefined) this.drop(key, new Error('ping stream replaced'))
    const stream = await this.node.dialProtocol(peer, [MEMBER_PING_PROTOCOL, PING_PROTOCOL], { signal, runOnLimitedConnection: true })
    const opened = { stream, openedAt: this.now(), maxAgeMs: MAX_STREAM_AGE_MS_BY_PROTOCOL[stream.protocol ?? ''] ?? 0 }
    this.open.set(key, opened)
    stream.addEventListener('close', () => { if (this.open.get(key) === opened) this.open.delete(key) })
    return opened
  }

  private drop (key: string, err: Error): void {
    const current = this.open.get(key)
    if (current === undefined) return
    this.open.delete(key)
    current.stream.abort(err)
  }

  /** Streams open now, for tests. */
  get size (): number {
    return this.open.size
  }
}
