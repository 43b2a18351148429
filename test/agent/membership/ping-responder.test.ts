import { join } from 'node:path'
import t from 'tap'
import { MEMBER_PING_PROTOCOL } from '../../../agent/mesh/mesh.ts'
import { MAX_QUEUED_ECHO_BYTES, PingResponder } from '../../../agent/membership/ping-responder.ts'
import { PingStreams } from '../../../agent/membership/ping-streams.ts'
import { readSwarmKey } from '../../../identity/keys.ts'
import { bareNode } from '../../../scripts/bare-node.ts'
import { tempDir, writeSwarmKey } from '../../helpers/agents.ts'

t.test('pings are echoed over a kept stream, and each tells the membership who spoke', async (t) => {
  const psk = readSwarmKey(writeSwarmKey(join(tempDir(t), 'swarm.key')))
  const [a, b] = [await bareNode(psk), await bareNode(psk)]
  t.teardown(async () => { await a.stop(); await b.stop() })
  await b.unhandle(MEMBER_PING_PROTOCOL)
  const heard: string[] = []
  const responder = new PingResponder({ node: b, membership: { heardPing: (peer) => { heard.push(peer) } } })
  await responder.start()
  await a.dial(b.getMultiaddrs()[0] as never)
  const pings = new PingStreams({ node: a })
  for (let i = 0; i < 3; i++) await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) })
  t.same(heard, [a.peerId.toString(), a.peerId.toString(), a.peerId.toString()], 'one word per ping, naming the pinger')
  await responder.stop()
  t.notOk(b.getProtocols().includes(MEMBER_PING_PROTOCOL), 'stopped: no new stream is taken')
  t.ok(await pings.ping(b.peerId, { signal: AbortSignal.timeout(2_000) }) >= 0, 'the stream open still answers (a ping during our leave is not a silence)')
})

/** A stream the responder is handed: records what it sends and why it was aborted; `queued` is its write buffer. */
function fakeStream (send: (data: Uint8Array) => boolean, queued = 0) {
  const target = new EventTarget()
  const stream = Object.assign(target, {
    sent: [] as number[],
    aborted: undefined as string | undefined,
    closed: false,
    writeBufferLength: queued,
    close: async () => { stream.closed = true },
    send: (data: Uint8Array) => { stream.sent.push(data.byteLength); return send(data) },
    abort: (err: Error) => { stream.aborted = err.message; target.dispatchEvent(new Event('close')) },
    message: (bytes: number) => { target.dispatchEvent(Object.assign(new Event('message'), { data: new Uint8Array(bytes) })) }
  })
  return stream
}

async function responderWith (streamMs = 60_000) {
  let handler: (stream: unknown, connection: unknown) => void = () => {}
  const heard: string[] = []
  const node = {
    handle: async (_protocol: string, fn: typeof handler) => { handler = fn },
    unhandle: async () => {}
  }
  const responder = new PingResponder({ node: node as never, membership: { heardPing: (peer) => { heard.push(peer) } }, streamMs })
  await responder.start()
  const open = (stream: ReturnType<typeof fakeStream>) => { handler(stream, { remotePeer: { toString: () => 'pinger' } }) }
  return { responder, heard, open }
}

t.test('a ping split over frames counts once it is whole; a pinger that does not read its echoes loses the stream', async (t) => {
  const { heard, open } = await responderWith()
  const stream = fakeStream(() => true)
  open(stream)
  stream.message(20)
  t.same(heard, [], 'not yet 32 bytes')
  stream.message(12)
  t.same(heard, ['pinger'], 'whole')
  t.same(stream.sent, [20, 12], 'every byte echoed as it came')
  const waiting = fakeStream(() => false, 32)
  open(waiting)
  waiting.message(32)
  t.equal(waiting.aborted, undefined, 'an echo queued while the connection drains: kept')
  t.same(heard, ['pinger', 'pinger'], 'and counted')
  const full = fakeStream(() => false, MAX_QUEUED_ECHO_BYTES + 32)
  open(full)
  full.message(32)
  t.equal(full.aborted, 'ping echoes not read', 'its echoes pile up: aborted')
  t.same(heard, ['pinger', 'pinger'], 'and it is not counted')
  const halfClosed = fakeStream(() => true)
  open(halfClosed)
  halfClosed.dispatchEvent(new Event('remoteCloseWrite'))
  t.equal(halfClosed.closed, true, 'a pinger that closed its side gets the stream closed')
  const closed = fakeStream(() => { throw new Error('Cannot write to a stream that is closed') })
  open(closed)
  closed.message(32)
  t.equal(closed.aborted, 'Cannot write to a stream that is closed', 'closed for writing: aborted')
})

t.test('a stream is served for streamMs at most', async (t) => {
  const { open } = await responderWith(50)
  const old = fakeStream(() => true)
  open(old)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(old.aborted, 'ping stream open too long')
})
