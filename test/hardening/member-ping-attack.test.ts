import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { MEMBER_PING_PROTOCOL } from '../../agent/mesh/mesh.ts'
import { PING_PROTOCOL } from '../../agent/membership/ping-streams.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { MEMBER_SYNC_PROTOCOL, memberSyncCodec } from '../../protocols/member-sync.ts'
import { bootstrapAddr, nodes, status } from '../helpers/agents.ts'
import { apiText } from '../../agent/cli/client.ts'
import { readSwarmKey } from '../../identity/keys.ts'
import { agentAndMember, bareNode } from '../helpers/bare-node.ts'
import { eventually } from '../helpers/eventually.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

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
  t.not(Buffer.isBuffer(third) && third.equals(Buffer.from(data)), true, `a third stream is not served (${Buffer.isBuffer(third) ? `${third.byteLength} bytes echoed` : third})`)
  // Holding streams open costs the agent nothing it does not bound: the first still answers, and so does the API.
  t.same(await echo(first, data), Buffer.from(data), 'the streams it holds still echo')
  t.equal((await status(agent)).name, 'pinged')
})

t.test('a member that pings the agent is not pinged back while it does; once it stops, its silence is found', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'pinged' })
  const addr = multiaddr(await bootstrapAddr(agent))
  // The member joins with its beacon handed over in member sync, then answers no ping at all, and never beacons
  // again: only its own pings say it lives.
  const sync = await member.dialProtocol(addr, MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(sync, { maxDataLength: memberSyncCodec.maxBytes })
  await lp.write(memberSyncCodec.encode({ v: 1, members: [], self: Buffer.from(healthCodec.encode(beaconMessage(sampleBeacon({ name: 'pinger', startedAt: Date.now(), seq: 1 })))).toString('base64') }))
  await lp.read()
  await member.unhandle(PING_PROTOCOL)
  await member.unhandle(MEMBER_PING_PROTOCOL)
  const stateOf = async () => (await nodes(agent)).find((n) => n.peerId === member.peerId.toString())?.state
  t.equal(await stateOf(), 'alive', 'joined')
  const stream = await member.dialProtocol(addr, MEMBER_PING_PROTOCOL, { maxOutboundStreams: 10 })
  const seen = new Set<string | undefined>()
  // 4 s of pings every 300 ms: past 1.1 s of silence the agent would ping it, and dead it after two unanswered.
  for (let i = 0; i < 14; i++) {
    await echo(stream, crypto.getRandomValues(new Uint8Array(32))).catch(() => Buffer.alloc(0)) // a closed stream: the state says why
    seen.add(await stateOf())
    await new Promise((resolve) => setTimeout(resolve, 300))
  }
  t.same([...seen], ['alive'], 'alive throughout, on its pings alone')
  const probes = async () => Object.fromEntries([...(await apiText(agent.socketPath, '/metrics')).matchAll(/^noodle_membership_probes_total\{outcome="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
  t.same(await probes(), {}, 'and never pinged by the agent')
  stream.abort(new Error('the member stops pinging'))
  const deadline = Date.now() + 5_000
  let state = await stateOf()
  while (state === 'alive' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    state = await stateOf()
  }
  t.not(state, 'alive', 'silent, and answering no ping: no longer alive within 5 s')
  t.match(await probes(), { timeout: Number }, 'found by the agent\'s own unanswered pings, counted')
})

t.test('a member found dead that connects again is pinged once and is alive on its answer, with no newer beacon; one that keeps reconnecting gets no more', async (t) => {
  const { agent, swarmKeyFile } = await agentAndMember(t, { name: 'pinged' })
  const addr = multiaddr(await bootstrapAddr(agent))
  const privateKey = await generateKeyPair('Ed25519')
  const member = await bareNode(readSwarmKey(swarmKeyFile), 'StrictSign', privateKey)
  t.teardown(async () => { await member.stop() })
  const sync = await member.dialProtocol(addr, MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(sync, { maxDataLength: memberSyncCodec.maxBytes })
  const beacon = sampleBeacon({ name: 'returner', startedAt: Date.now(), seq: 1 })
  await lp.write(memberSyncCodec.encode({ v: 1, members: [], self: Buffer.from(healthCodec.encode(beaconMessage(beacon))).toString('base64') }))
  await lp.read()
  const stateOf = async () => (await nodes(agent)).find((n) => n.peerId === member.peerId.toString())?.state
  t.equal(await stateOf(), 'alive', 'joined')
  // Its process goes: the agent's probe is refused, and it is dead.
  await member.stop()
  t.equal(await eventually(stateOf, 'dead', { timeoutMs: 10_000 }), 'dead', 'gone: dead')
  // The same key comes back (the same run: no newer beacon) and connects: the agent pings it, it answers.
  const again = await bareNode(readSwarmKey(swarmKeyFile), 'StrictSign', privateKey)
  t.teardown(async () => { await again.stop() })
  await again.dial(addr)
  t.equal(await eventually(stateOf, 'alive', { timeoutMs: 10_000 }), 'alive', 'pinged on connecting, and alive on its answer')
  const probes = async () => Object.fromEntries([...(await apiText(agent.socketPath, '/metrics')).matchAll(/^noodle_membership_probes_total\{outcome="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]))
  const before = await probes()
  // Alive, it reconnects over and over: no probe comes of that.
  for (let i = 0; i < 5; i++) {
    await again.hangUp(addr)
    await again.dial(addr)
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(await stateOf(), 'alive')
  t.ok(((await probes()).answered ?? 0) - (before.answered ?? 0) <= 5, 'at most one probe per closed connection, as any member gets')
})
