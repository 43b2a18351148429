import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { MEMBER_PING_PROTOCOL } from '../../agent/mesh/mesh.ts'
import { bootstrapAddr, status } from '../helpers/agents.ts'
import { agentAndMember } from '../helpers/bare-node.ts'

/** Sends 32 bytes on `stream` and resolves with what comes back within 2 s (or what came by then). */
async function echo (stream: { send: (data: Uint8Array) => boolean, addEventListener: (type: 'message', fn: (e: { data: Uint8Array | { subarray: () => Uint8Array } }) => void) => void }, data: Uint8Array): Promise<Buffer> {
  const received: Uint8Array[] = []
  let resolve = (_: Buffer) => {}
  const done = new Promise<Buffer>((r) => { resolve = r })
  stream.addEventListener('message', (e) => {
    received.push(e.data instanceof Uint8Array ? e.data : e.data.subarray())
    if (Buffer.concat(received).byteLength >= data.byteLength) resolve(Buffer.concat(received))
  })
  setTimeout(() => { resolve(Buffer.concat(received)) }, 2_000).unref()
  stream.send(data)
  return await done
}

t.test('a member holds long-lived ping streams to an agent: two per connection, the third refused, pings still answered', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'pinged' })
  const addr = multiaddr(await bootstrapAddr(agent))
  // A hostile member keeps no limit of its own on what it opens (a registered handler's would apply).
  await member.unhandle(MEMBER_PING_PROTOCOL)
  const first = await member.dialProtocol(addr, MEMBER_PING_PROTOCOL, { maxOutboundStreams: 10 })
  const second = await member.dialProtocol(addr, MEMBER_PING_PROTOCOL, { maxOutboundStreams: 10 })
  const data = crypto.getRandomValues(new Uint8Array(32))
  t.same(await echo(first, data), Buffer.from(data), 'the first stream echoes')
  t.same(await echo(second, data), Buffer.from(data), 'so does the second')
  // The third on the same connection: libp2p refuses a stream past the protocol's inbound limit (a reset).
  const third = await member.dialProtocol(addr, MEMBER_PING_PROTOCOL, { maxOutboundStreams: 10 }).then((s) => echo(s, data)).catch((err: Error) => err.name)
  t.not(Buffer.isBuffer(third) && third.equals(Buffer.from(data)), true, `a third stream is not served (${String(third)})`)
  // Holding streams open costs the agent nothing it does not bound: the first still answers, and so does the API.
  t.same(await echo(first, data), Buffer.from(data), 'the streams it holds still echo')
  t.equal((await status(agent)).name, 'pinged')
})
