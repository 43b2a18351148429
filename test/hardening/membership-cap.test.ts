import { createServer } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { loadConfig } from '../../agent/config/config.ts'
import { createLogger } from '../../common/logger.ts'
import { DEFAULT_MAX_MEMBERS, Membership, STANDING_MS } from '../../agent/membership/membership.ts'
import { MembershipService } from '../../agent/membership/membership-service.ts'
import { MemberBus } from '../../agent/membership/bus.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'
import type { Member, MemberRefusal } from '../../agent/membership/membership.ts'
import { ensureDataDir, loadOrCreateIdentity, readSwarmKey } from '../../identity/keys.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { MemberBeacons } from '../../agent/membership/member-beacons.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import { bootstrapAddr, gossip, nodes, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { bareNode } from '../helpers/bare-node.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { sendRaw, signedMessage } from '../helpers/gossip-message.ts'

const options = { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000, maxMembers: 3 }
const beacon = (name: string, startedAt = 1, seq = 1): HealthBeacon => sampleBeacon({ name, startedAt, seq })
const member = (peerId: string, state: Member['state'] = 'alive'): Member => ({ peerId, name: peerId, state, role: 'member', addrs: [], lastSeen: 0, health: null })

function setup (reserved: string[] = []) {
  let now = 1_000_000
  const table = new Membership({ self: member('self'), options, now: () => now, reserved })
  const refused: MemberRefusal[] = []
  const changes: string[] = []
  table.on('refuse', (r) => { refused.push(r) })
  table.on('change', (c) => { changes.push(`${c.member.peerId}:${c.from ?? 'new'}->${c.to}`) })
  return { table, refused, changes, advance: (ms: number) => { now += ms; table.tick() } }
}

t.test('a full table refuses newcomers (an event with the reason); members of standing, dead ones included, and bootstrap peers are never crowded out; the left and the short-lived dead make room', async (t) => {
  const { table, refused, changes, advance } = setup(['boot'])
  const reaped: string[] = []
  table.on('reap', (m) => { reaped.push(m.peerId) })
  t.equal(table.observeBeacon('a', beacon('a')), true)
  t.equal(table.observeBeacon('b', beacon('b')), true)
  t.equal(table.count(), 3, 'self, a and b: full')

  t.equal(table.observeBeacon('stranger', beacon('stranger')), false, 'a newcomer past the cap is not news')
  t.equal(table.get('stranger'), undefined, 'and not a member')
  t.notOk(table.isLatest('stranger', beacon('stranger')), 'its beacon speaks for nobody (no claim reaches the election)')
  t.same(refused, [{ peerId: 'stranger', name: 'stranger', reason: 'too-many-members' }])

  advance(STANDING_MS)
  table.spoke() // our own beacon, as the agent sends one every interval
  t.equal(table.observeBeacon('a', beacon('a', 1, 2)), false, 'a known member is still heard')
  table.observeBeacon('b', beacon('b', 1, 2))
  t.equal(table.observeBeacon('boot', beacon('boot')), true, 'a bootstrap peer joins whatever the table holds')
  t.equal(table.count(), 4)

  // A member of standing found dead keeps its place (its work is what the coordinator moves); a newcomer waits.
  table.takeProbes()
  advance(1_200) // past probeAfterMs, and ANSWERER_SLACK_MS for those we are not the pinger of
  t.same(table.takeProbes().sort(), ['a', 'b', 'boot'])
  table.observeProbe('a', 'refused')
  t.equal(table.get('a')?.state, 'dead')
  t.equal(table.observeBeacon('stranger', beacon('stranger', 1, 2)), false)
  t.equal(table.observeBeacon('a', beacon('a', 2, 1)), true, 'the dead member comes back: news')
  t.equal(refused.length, 2)

  // A member that left makes room at once: nothing is placed on it or moved from it any more.
  table.observeLeave('b', { v: 1, type: 'member.leave', at: 0, startedAt: 1 })
  t.equal(table.observeBeacon('stranger', beacon('stranger', 1, 3)), true, 'the newcomer takes the place b left')
  t.same(reaped, ['b'], 'b is forgotten as if reaped')

  // So does one that died soon after it joined: a key holder's made-up members beacon once and go.
  table.takeProbes()
  advance(1_200) // past probeAfterMs, and ANSWERER_SLACK_MS for those we are not the pinger of
  table.takeProbes()
  table.observeProbe('stranger', 'refused')
  t.equal(table.get('stranger')?.state, 'dead')
  t.equal(table.observeBeacon('late', beacon('late')), true, 'a later newcomer takes its place')
  t.same(reaped, ['b', 'stranger'])
  t.equal(table.observeBeacon('later', beacon('later')), false, 'with only members of standing and bootstrap peers left, the next is refused')
  t.same(changes.filter((c) => c.endsWith('new->alive')), ['a:new->alive', 'b:new->alive', 'boot:new->alive', 'stranger:new->alive', 'late:new->alive'])
})

t.test('members remembered from an earlier run beyond the cap are left out and said so; bootstrap peers are not', async (t) => {
  const { table } = setup(['boot'])
  const skipped = table.restore(['a', 'b', 'c', 'boot'].map((id) => member(id)))
  t.equal(skipped, 1, 'c: self, a and b fill the table')
  t.same(table.list().map((m) => m.peerId).sort(), ['a', 'b', 'boot', 'self'])
})

/** A health beacon signed with `key`, as gossipsub would sign it for that key's peer (any key holder can do this). */
async function forgedBeacon (key: PrivateKey, value: HealthBeacon, seqno: bigint) {
  return await signedMessage(key, TOPICS.nodeHealth, healthCodec.encode(beaconMessage(value)), seqno)
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('a rogue member signing beacons with many made-up keys fills the table only to membership.maxMembers; the rest are refused and counted, and a real member still joins', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  // The box that will join late is the victim's bootstrap peer: its identity and port are fixed beforehand.
  const lateDir = join(root, 'late')
  ensureDataDir(lateDir)
  const lateId = (await loadOrCreateIdentity(lateDir)).peerId.toString()
  const latePort = await freePort()
  const victim = await startAgent({
    root, name: 'victim', swarmKeyFile, bootstrap: [`/ip4/127.0.0.1/tcp/${latePort}/p2p/${lateId}`], env: { NOODLE_MEMBERSHIP_MAX_MEMBERS: '4' }
  })
  t.teardown(() => stopAgents([victim]))
  const rogue = await bareNode(readSwarmKey(swarmKeyFile))
  t.teardown(async () => { await rogue.stop() })
  await rogue.dial(multiaddr(await bootstrapAddr(victim)))
  await waitFor('the victim to listen to beacons', () => rogue.services.pubsub.getSubscribers(TOPICS.nodeHealth).some((p) => p.toString() === victim.peerId))

  // One connection, eight made-up members: each beacon validly signed by its own fresh key.
  const keys = await Promise.all(Array.from({ length: 8 }, async () => await generateKeyPair('Ed25519')))
  const send = async (i: number, seq: bigint, fields: Partial<HealthBeacon> = {}) => {
    const message = await forgedBeacon(keys[i] as PrivateKey, sampleBeacon({ name: `fake-${i}`, startedAt: 1, seq: Number(seq), ...fields }), seq)
    const sent = await sendRaw(rogue.services.pubsub, victim.peerId, message)
    t.ok(sent, `beacon of fake-${i} sent`)
  }
  for (let i = 0; i < keys.length; i++) await send(i, 1n)
  const key = `too-many-members/${TOPICS.nodeHealth}`
  const refused = await waitFor('the newcomers past the cap to be counted', async () => (await gossip(victim)).rejected[key] === 5 && 5)
  t.equal(refused, 5, 'five of eight refused and counted')
  const admitted = (await nodes(victim)).map((n) => n.name).filter((name) => name !== 'victim')
  t.equal(admitted.length, 3, 'the table holds membership.maxMembers (4), self included')
  t.ok(admitted.every((name) => /^fake-\d$/.test(name)))

  // Known members are still heard; their places are theirs.
  const known = Number((admitted[0] as string).slice(5))
  await send(known, 2n, { name: 'renamed' })
  t.equal(await waitFor('a known member\'s newer beacon to be taken', async () => (await nodes(victim)).some((n) => n.name === 'renamed') && 'taken'), 'taken')

  // A real box, a bootstrap peer of the victim, joins the full table.
  const late = await startAgent({ root, name: 'late', dataDir: lateDir, swarmKeyFile, listen: [`/ip4/127.0.0.1/tcp/${latePort}`] })
  t.teardown(() => stopAgents([late]))
  const joined = await waitFor('the bootstrap peer to join', async () => (await nodes(victim)).find((n) => n.name === 'late' && n.state === 'alive'))
  t.equal(joined.peerId, lateId)
  t.equal((await status(victim)).name, 'victim', 'the victim is up')
  t.equal((await gossip(victim)).rejected[key], 5, 'the bootstrap peer was not refused')
})

t.test('membership.maxMembers: 1024 by default, at least 2 (self and one other), named when wrong', async (t) => {
  t.equal(loadConfig({ env: {} }).membership.maxMembers, DEFAULT_MAX_MEMBERS)
  t.equal(DEFAULT_MAX_MEMBERS, 1024)
  t.equal(loadConfig({ env: { NOODLE_MEMBERSHIP_MAX_MEMBERS: '2' } }).membership.maxMembers, 2)
  t.throws(() => loadConfig({ env: { NOODLE_MEMBERSHIP_MAX_MEMBERS: '1' } }), { code: 'ERR_CONFIG', key: 'membership.maxMembers', message: /NOODLE_MEMBERSHIP_MAX_MEMBERS/ })
})

t.test('the service: members remembered past the cap are left out with a warning; a refused newcomer is counted under the health topic, never dialled', async (t) => {
  const lines: string[] = []
  const log = createLogger('debug', { write: (line: string) => { lines.push(line); return true } } as never)
  const metrics = new MetricsStore()
  const wanted: string[] = []
  const membership = new Membership({ self: member('self'), options })
  const handlers = new Map<string, (value: unknown, from: { toString: () => string }) => void>()
  const mesh = {
    peerId: { toString: () => 'self' },
    subscribe: (codec: { topic: string }, handler: (value: unknown, from: { toString: () => string }) => void) => { handlers.set(codec.topic, handler) },
    unsubscribe: () => {},
    publish: async () => {},
    node: { addEventListener: () => {}, removeEventListener: () => {} }
  }
  const members = { load: () => ['a', 'b', 'c'].map((id) => member(id)), save: () => {} }
  const events = { record: () => {} }
  const dialer = { want: async (peerId: string) => { wanted.push(peerId) }, forget: () => {} }
  const beacons = new MemberBeacons({ maxMembers: 3 })
  const service = new MembershipService({
    mesh: mesh as never, membership, beacons, dialer: dialer as never, members: members as never, events: events as never, metrics, log, tickMs: 60_000, verdicts: false, bus: new MemberBus()
  })
  await service.start()
  t.same(wanted.sort(), ['a', 'b'], 'the two remembered members that fit are dialled')
  t.match(lines.join(''), /"skipped":1,.*members remembered past membership.maxMembers were left out/)
  handlers.get(TOPICS.nodeHealth)?.(beaconMessage(beacon('stranger')), { toString: () => 'stranger' })
  t.same(metrics.series(REJECTED_METRIC), { [`too-many-members/${TOPICS.nodeHealth}`]: 1 })
  t.same(wanted.sort(), ['a', 'b'], 'the newcomer is not dialled')
  t.equal(beacons.size, 0, 'nor its record kept')
  await service.stop()
})
