import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { MEMBER_SYNC_PROTOCOL, memberSyncCodec } from '../../protocols/member-sync.ts'
import { bootstrapAddr, gossip } from '../helpers/agents.ts'
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
