import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { MEMBER_SYNC_PROTOCOL, memberSyncCodec } from '../../protocols/member-sync.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { memberVerdictCodec } from '../../protocols/verdicts.ts'
import { WorkItemWireSchema } from '../../protocols/work.ts'
import { bootstrapAddr, gossip, nodes } from '../helpers/agents.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { RECORD_ANSWER_MS } from '../../agent/membership/health-reporter.ts'
import { agentAndMember } from '../helpers/bare-node.ts'
import { eventually } from '../helpers/eventually.ts'
import type { HealthBeacon } from '../../protocols/health.ts'

type Member = Awaited<ReturnType<typeof agentAndMember>>['member']

/** One member-sync exchange from `member`: `beacon` as its own (`self`); resolves with the agent's answer. */
async function syncWith (member: Member, addr: string, beacon: HealthBeacon) {
  // One exchange per connection: each on a connection of its own, as a hostile member can open them.
  await member.hangUp(multiaddr(addr)).catch(() => {})
  const stream = await member.dialProtocol(multiaddr(addr), MEMBER_SYNC_PROTOCOL, { force: true })
  const lp = lpStream(stream, { maxDataLength: memberSyncCodec.maxBytes })
  await lp.write(memberSyncCodec.encode({ v: 1, members: [], self: Buffer.from(healthCodec.encode(beaconMessage(beacon))).toString('base64') }))
  const answer = memberSyncCodec.decode((await lp.read()).subarray())
  await stream.close()
  return answer
}

t.test('a beacon handed over in member sync is held to the size gossip allows it', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'listener' })
  const addr = await bootstrapAddr(agent)
  // 32 work items with 4 KiB model names: each field within its schema, the whole far past the topic's 16 KiB.
  const work = Array.from({ length: 32 }, (_, i) => WorkItemWireSchema.parse({ id: `w${i}`, kind: 'model', model: 'm'.repeat(4096), source: 's'.repeat(500) }))
  const oversized = sampleBeacon({ name: 'oversized', startedAt: Date.now(), seq: 1, work })
  const bytes = healthCodec.encode(beaconMessage(oversized)).byteLength
  t.ok(bytes > healthCodec.maxBytes, `gossip would refuse this beacon as oversized (${bytes} > ${healthCodec.maxBytes} bytes)`)
  t.match(await syncWith(member, addr, oversized), { ok: true }, 'the agent answers the exchange')
  // Past any size the health topic takes, even as base64: the whole list is refused.
  t.equal(await eventually(async () => (await gossip(agent)).rejected[`invalid/${MEMBER_SYNC_PROTOCOL}`], 1), 1, 'refused, counted as an invalid list')
  // Within the list's cap for `self` but past the topic's 16 KiB: refused as gossip would refuse it.
  await member.hangUp(multiaddr(addr)).catch(() => {})
  const stream = await member.dialProtocol(multiaddr(addr), MEMBER_SYNC_PROTOCOL)
  const lp = lpStream(stream, { maxDataLength: memberSyncCodec.maxBytes })
  await lp.write(memberSyncCodec.encode({ v: 1, members: [], self: Buffer.alloc(healthCodec.maxBytes + 100, 0x81).toString('base64') }))
  await lp.read()
  t.equal(await eventually(async () => (await gossip(agent)).rejected[`oversized/${healthCodec.topic}`], 1), 1, 'refused as oversized on the health topic')
  const seen = (await nodes(agent)).find((n) => n.peerId === member.peerId.toString())
  t.not(seen?.name, 'oversized', 'and the member is not taken in on it')
})

t.test('a member restarting over and over does not make the agent broadcast its record each time', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'listener' })
  const addr = await bootstrapAddr(agent)
  const agentId = (await nodes(agent)).find((n) => n.name === 'listener')?.peerId
  let records = 0
  let counting = false
  member.services.pubsub.addEventListener('message', (event) => {
    const msg = event.detail
    if (!counting || msg.topic !== TOPICS.nodeHealth || msg.type !== 'signed' || msg.from.toString() !== agentId) return
    const decoded = healthCodec.decode(msg.data)
    if (decoded.ok && decoded.value.record !== undefined) records++
  })
  member.services.pubsub.subscribe(TOPICS.nodeHealth)
  // Joined, and the agent's beacons reach the member over gossip.
  const start = Date.now()
  await syncWith(member, addr, sampleBeacon({ name: 'restarter', startedAt: start, seq: 1 }))
  await eventually(async () => (await nodes(agent)).find((n) => n.peerId === member.peerId.toString())?.state, 'alive')
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  counting = true
  const countingFrom = Date.now()
  // 20 "new runs", 100 ms apart (plus a connection each): each is a member met, each answered with our record to
  // every member (O(N) messages each, O(N²) across the mesh); records go out at most once a RECORD_ANSWER_MS.
  for (let i = 1; i <= 20; i++) {
    await syncWith(member, addr, sampleBeacon({ name: 'restarter', startedAt: start + i, seq: 1 }))
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  counting = false
  const elapsed = Date.now() - countingFrom
  const allowed = Math.ceil(elapsed / RECORD_ANSWER_MS) + 1
  t.ok(records <= allowed, `records the agent broadcast in ${elapsed} ms of 20 restarts: ${records} (one a second: at most ${allowed})`)
})

t.test('a member saying a live member is dead makes the agent probe it, never list it dead; a verdict on the agent itself or a stranger is nothing', async (t) => {
  const { agent, member } = await agentAndMember(t, { name: 'listener', logLevel: 'debug' })
  const addr = await bootstrapAddr(agent)
  const beacon = sampleBeacon({ name: 'liar', startedAt: Date.now(), seq: 1 })
  await syncWith(member, addr, beacon)
  const state = async () => (await nodes(agent)).find((n) => n.peerId === member.peerId.toString())?.state
  t.equal(await eventually(state, 'alive'), 'alive', 'the member is in')
  const pubsub = member.services.pubsub
  await eventually(() => pubsub.getSubscribers(TOPICS.memberVerdicts).length, 1)
  const agentId = (await nodes(agent)).find((n) => n.name === 'listener')?.peerId as string
  const verdict = (peerId: string) => memberVerdictCodec.encode({ v: 1, peerId, about: { startedAt: beacon.startedAt, seq: beacon.seq } })
  // About itself (it answers our ping), about the agent, about a member nobody has.
  for (const peerId of [member.peerId.toString(), agentId, '12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ']) await pubsub.publish(TOPICS.memberVerdicts, verdict(peerId))
  const probed = await eventually(() => agent.output().includes('a member says it found this one dead: probing it'), true)
  t.equal(probed, true, 'the verdict about a member it holds alive: probed at once')
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  t.equal(await state(), 'alive', 'it answered the probe: alive, as before')
  t.equal(agent.output().split('\n').filter((l) => l.includes('a member says it found this one dead')).length, 1, 'the other two verdicts were nothing')
  t.same((await gossip(agent)).rejected, {}, 'and none of it was malformed')
})
