import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { MEMBER_SYNC_PROTOCOL, memberSyncCodec } from '../../protocols/member-sync.ts'
import { bootstrapAddr, gossip, statesSeenBy } from '../helpers/agents.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { agentAndMember } from '../helpers/bare-node.ts'
import { eventually } from '../helpers/eventually.ts'

const PEER = '12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ'
const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

t.test('member lists: good ones are read, bad ones are refused with the reason', async (t) => {
  const good = { v: 1, members: [{ peerId: PEER, addrs: ['/ip4/10.0.0.2/tcp/4001'] }] }
  t.same(memberSyncCodec.decode(memberSyncCodec.encode(good as never)), { ok: true, value: good })
  t.match(memberSyncCodec.decode(enc({ v: 1, members: [{ peerId: 'not-a-peer', addrs: ['/ip4/1.2.3.4/tcp/1'] }] })), { ok: false, reason: 'invalid', detail: /^members\.0\.peerId/ })
  t.match(memberSyncCodec.decode(enc({ v: 1, members: [{ peerId: PEER, addrs: [] }] })), { ok: false, reason: 'invalid', detail: /addrs/ })
  t.match(memberSyncCodec.decode(enc({ v: 1, members: Array(1025).fill(good.members[0]) })), { ok: false, reason: 'invalid' })
  t.match(memberSyncCodec.decode(enc({ v: 3, members: [] })), { ok: false, reason: 'unknown-version' })
  t.match(memberSyncCodec.decode(new TextEncoder().encode('members?')), { ok: false, reason: 'malformed' })
  const self = Buffer.from(healthCodec.encode(beaconMessage(sampleBeacon({ name: 'sender' })))).toString('base64')
  t.same(memberSyncCodec.decode(memberSyncCodec.encode({ ...good, self } as never)), { ok: true, value: { ...good, self } }, 'with the sender\'s own beacon')
  t.match(memberSyncCodec.decode(enc({ ...good, self: 'A'.repeat(22 * 1024 + 1) })), { ok: false, reason: 'invalid', detail: /^self/ }, 'a beacon past any the health topic takes voids the list')
})

t.test('the beacon a member hands over in member sync speaks for that member alone, at once; the agent hands over its own', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'listener' })
  const stream = await member.dialProtocol(multiaddr(await bootstrapAddr(agent)), MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(stream)
  // Whatever peer the beacon would name, the connection says whose it is: the member that opened it.
  await lp.write(memberSyncCodec.encode({ v: 1, members: [], self: Buffer.from(healthCodec.encode(beaconMessage(sampleBeacon({ name: 'bare', startedAt: Date.now(), seq: 1 })))).toString('base64') }))
  const answer = memberSyncCodec.decode((await lp.read()).subarray())
  const theirs = answer.ok && answer.value.self !== undefined ? healthCodec.decode(Buffer.from(answer.value.self, 'base64')) : answer
  t.match(theirs, { ok: true, value: { v: 2, record: { name: 'listener' } } }, 'the answer carries the agent\'s own beacon and record, as the health topic encodes them')
  const seen = await eventually(async () => (await statesSeenBy(agent)).get(member.peerId.toString()), 'alive')
  t.equal(seen, 'alive', 'the member is alive on its own beacon, with no gossip in between')
})

t.test('an agent answers a member-sync stream, and counts a bad list it is sent', async (t) => {
  const { agent, member: rogue } = await agentAndMember(t, { name: 'listener' })
  const stream = await rogue.dialProtocol(multiaddr(await bootstrapAddr(agent)), MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(stream)
  await lp.write(new TextEncoder().encode('{"v":1,"members":"everyone"}'))
  const answer = memberSyncCodec.decode((await lp.read()).subarray())
  t.ok(answer.ok, 'the agent answers with a well-formed member list')
  const counted = await eventually(async () => (await gossip(agent)).rejected[`invalid/${MEMBER_SYNC_PROTOCOL}`], 1)
  t.equal(counted, 1, 'refused and counted as invalid')
})

t.test('a bad beacon in member sync is refused and counted on the health topic; the member list with it is still read; a second exchange on one connection is refused', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'listener' })
  const addr = multiaddr(await bootstrapAddr(agent))
  const stream = await member.dialProtocol(addr, MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(stream)
  const bad = Buffer.from(healthCodec.encode(beaconMessage(sampleBeacon({ name: 'bare' })))).subarray(0, 20).toString('base64')
  await lp.write(memberSyncCodec.encode({ v: 1, members: [{ peerId: PEER, addrs: ['/ip4/10.255.0.1/tcp/4001'] }], self: bad }))
  t.ok(memberSyncCodec.decode((await lp.read()).subarray()).ok, 'answered')
  const rejected = await eventually(async () => (await gossip(agent)).rejected, (r) => r[`malformed/${healthCodec.topic}`] === 1)
  t.equal(rejected[`malformed/${healthCodec.topic}`], 1, 'the truncated beacon: malformed, counted under the health topic')
  t.equal(rejected[`invalid/${MEMBER_SYNC_PROTOCOL}`], undefined, 'the list itself was fine')
  // The agent aborts it at once: the write or the read fails, whichever comes after the abort.
  const second = await (async () => {
    const lp2 = lpStream(await member.dialProtocol(addr, MEMBER_SYNC_PROTOCOL))
    await lp2.write(memberSyncCodec.encode({ v: 1, members: [] }))
    await lp2.read()
  })().then(() => 'answered', () => 'refused')
  t.equal(second, 'refused', 'one exchange per connection')
  t.equal(await eventually(async () => (await gossip(agent)).rejected[`repeated/${MEMBER_SYNC_PROTOCOL}`], 1), 1, 'counted as repeated')
})
