import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { Membership } from '../../../agent/membership/membership.ts'
import type { Member } from '../../../agent/membership/membership.ts'
import { MembershipService } from '../../../agent/membership/membership-service.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { systemEventCodec } from '../../../protocols/events.ts'
import type { SystemEvent } from '../../../protocols/events.ts'
import { MemberBeacons } from '../../../agent/membership/member-beacons.ts'
import { beaconMessage, healthCodec, recordOf, revOf, wireOf } from '../../../protocols/health.ts'
import type { HealthBeacon, HealthWire } from '../../../protocols/health.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'
import { memberVerdictCodec } from '../../../protocols/verdicts.ts'
import type { MemberVerdict } from '../../../protocols/verdicts.ts'

const OPTIONS = { probeAfterMs: 1_000, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 60_000 }

const newPeer = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()

type Handler = (value: unknown, from: { toString: () => string }) => void

/** A membership service over a real table, with a fake mesh, dialer, records and event log that remember what they were asked. */
async function service (t: { teardown: (fn: () => unknown) => void }, remembered: Member[] = [], { verdicts = false, partialMesh = false } = {}) {
  const selfId = await newPeer()
  let now = 1_000_000
  const membership = new Membership({
    self: { peerId: selfId, name: 'self', state: 'alive', role: 'member', addrs: [], lastSeen: now, health: null },
    options: { ...OPTIONS, partialMesh },
    now: () => now
  })
  const handlers = new Map<string, Handler>()
  const published: unknown[] = []
  const aborted: string[] = []
  const node = Object.assign(new EventTarget(), {
    getConnections: (peer: { toString: () => string }) => [{ abort: (err: Error) => { aborted.push(`${peer.toString()}: ${err.message}`) } }]
  })
  const mesh = {
    node,
    peerId: peerIdFromString(selfId),
    subscribe: (codec: { topic: string }, handler: Handler) => { handlers.set(codec.topic, handler) },
    unsubscribe: (codec: { topic: string }, handler: Handler) => { if (handlers.get(codec.topic) === handler) handlers.delete(codec.topic) },
    publish: async (codec: { topic: string }, value: unknown) => { published.push({ topic: codec.topic, value }) }
  }
  const wanted: Array<[string, string[], string | undefined]> = []
  const forgotten: string[] = []
  const dialer = { want: async (peer: string, addrs: string[] = [], origin?: string) => { wanted.push([peer, addrs, origin]) }, forget: (peer: string) => { forgotten.push(peer) } }
  const saved: string[][] = []
  const removed: string[][] = []
  const members = { load: () => remembered, save: (ms: Iterable<Member>) => { saved.push([...ms].map((m) => `${m.name}:${m.state}`)) }, remove: (ids: Iterable<string>) => { removed.push([...ids]) } }
  const recorded: Array<[string, string | null, unknown]> = []
  const events = { record: (type: string, peer: string | null, data: unknown) => { recorded.push([type, peer, data]) } }
  const bus = new MemberBus()
  const heard = { met: 0, beacons: [] as Array<[string, number]>, disconnects: [] as string[] }
  bus.on('member-met', () => { heard.met++ })
  bus.on('beacon', (peer, b) => { heard.beacons.push([peer, b.seq]) })
  bus.on('probe-now', (peer) => { heard.disconnects.push(peer) })
  const asks = { wanted: [] as string[], asked: [] as string[] }
  bus.on('record-wanted', (peer) => { asks.wanted.push(peer) })
  bus.on('record-asked', (peer) => { asks.asked.push(peer) })
  const beacons = new MemberBeacons({ maxMembers: 1024 })
  const metrics = new MetricsStore()
  const membershipService = new MembershipService({
    mesh: mesh as never, bus, membership, beacons, dialer: dialer as never, members: members as never, events: events as never, metrics, log: createLogger('silent'), tickMs: 60_000, verdicts
  })
  let stopped = false
  t.teardown(async () => { if (!stopped) await membershipService.stop() })
  return {
    selfId,
    membership,
    service: membershipService,
    stop: async () => { stopped = true; await membershipService.stop() },
    handlers,
    published,
    aborted,
    node,
    wanted,
    forgotten,
    saved,
    removed,
    recorded,
    bus,
    heard,
    asks,
    beacons,
    advance: (ms: number) => { now += ms },
    beacon: (peer: string, b: HealthBeacon) => { handlers.get(healthCodec.topic)?.(beaconMessage(b), peerIdFromString(peer)) },
    /** A pulse alone: the record's revision, not the record. */
    pulse: (peer: string, b: HealthBeacon, options: { ask?: string[] } = {}) => {
      handlers.get(healthCodec.topic)?.(wireOf(b, revOf(recordOf(b)), options), peerIdFromString(peer))
    },
    wire: (peer: string, w: HealthWire) => { handlers.get(healthCodec.topic)?.(w, peerIdFromString(peer)) },
    event: (peer: string, e: SystemEvent) => { handlers.get(systemEventCodec.topic)?.(e, peerIdFromString(peer)) },
    verdict: (peer: string, v: MemberVerdict) => { handlers.get(memberVerdictCodec.topic)?.(v, peerIdFromString(peer)) }
  }
}

t.test('start restores the table, comes back to the remembered members and reads beacons and events; the constructor does nothing', async (t) => {
  const [kept, gone] = [await newPeer(), await newPeer()]
  const remembered: Member[] = [
    { peerId: kept, name: 'kept', state: 'alive', role: 'member', addrs: ['/ip4/10.0.0.7/tcp/4001'], lastSeen: 1, health: null },
    { peerId: gone, name: 'gone', state: 'left', role: 'member', addrs: ['/ip4/10.0.0.8/tcp/4001'], lastSeen: 1, health: null }
  ]
  const s = await service(t, remembered)
  t.same([...s.handlers.keys()], [], 'built, it reads nothing yet')
  t.equal(s.bus.listenerCount('own-beacon'), 0)
  await s.service.start()
  t.same([...s.handlers.keys()].sort(), [healthCodec.topic, systemEventCodec.topic, memberVerdictCodec.topic].sort())
  t.same(s.wanted, [[kept, ['/ip4/10.0.0.7/tcp/4001'], 'member']], 'those that left are not dialled')
  t.same(s.membership.list().map((m) => m.name).sort(), ['gone', 'kept', 'self'])
})

t.test('a newcomer\'s beacon: a member, dialled, member-met; each newest beacon goes on the bus, an older one does not', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 2, addrs: ['/ip4/10.0.0.9/tcp/4001'] }))
  t.same({ state: s.membership.get(peer)?.state, wanted: s.wanted, met: s.heard.met, beacons: s.heard.beacons },
    { state: 'alive', wanted: [[peer, ['/ip4/10.0.0.9/tcp/4001'], 'member']], met: 1, beacons: [[peer, 2]] })
  t.same(s.recorded, [['member.state', peer, { name: 'alpha', from: null, to: 'alive', reason: 'first beacon' }]])
  t.same(s.saved, [['alpha:alive']], 'a state change is saved at once')
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 3 }))
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 1 }))
  t.same({ met: s.heard.met, beacons: s.heard.beacons }, { met: 1, beacons: [[peer, 2], [peer, 3]] }, 'no member-met in a known member\'s beacon; the late, older one is not passed on')
})

t.test('our own beacon, told on the bus, is how the table shows us', async (t) => {
  const s = await service(t)
  await s.service.start()
  s.bus.emit('own-beacon', sampleBeacon({ name: 'self-renamed', role: 'coordinator', addrs: ['/ip4/10.0.0.1/tcp/4001'], cpuPct: 37 }))
  t.match(s.membership.self, { name: 'self-renamed', role: 'coordinator', addrs: ['/ip4/10.0.0.1/tcp/4001'], health: { cpuPct: 37 } })
})

t.test('disconnections, deaths, leaves and reaps', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 1 }))
  s.node.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(peer) }))
  t.same({ state: s.membership.get(peer)?.state, disconnects: s.heard.disconnects }, { state: 'suspect', disconnects: [peer] }, 'suspect, and the prober is told to probe now')
  t.same(s.membership.takeProbes(1), [peer])
  s.membership.observeProbe(peer, 'refused')
  t.same(s.aborted, [`${peer}: member alpha is dead: connection refused: nothing listens at its addresses`], 'a dead member\'s connections are cut')
  t.same(s.recorded.at(-1), ['member.state', peer, { name: 'alpha', from: 'suspect', to: 'dead', reason: 'connection refused: nothing listens at its addresses' }])
  s.advance(OPTIONS.reapAfterMs)
  s.membership.tick()
  t.same({ forgotten: s.forgotten, removed: s.removed, last: s.recorded.at(-1) }, { forgotten: [peer], removed: [[peer]], last: ['member.reaped', peer, { name: 'alpha', state: 'dead' }] }, 'reaped: forgotten by the dialer and the store')

  const leaver = await newPeer()
  s.beacon(leaver, sampleBeacon({ name: 'bravo', seq: 1, startedAt: 7 }))
  s.event(leaver, { v: 1, type: 'member.leave', at: 1, startedAt: 7 })
  t.same({ state: s.membership.get(leaver)?.state, forgotten: s.forgotten.at(-1) }, { state: 'left', forgotten: leaver })
})

t.test('stop stops reading and listening, and flushes the table (the leave is LeaveAnnouncement\'s)', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 1 }))
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 2, cpuPct: 55 }))
  await s.stop()
  t.same(s.published, [], 'nothing published on the way out')
  t.same([...s.handlers.keys()], [], 'both topics unsubscribed')
  t.same([s.bus.listenerCount('own-beacon'), s.membership.listenerCount('change'), s.membership.listenerCount('reap'), s.membership.listenerCount('refuse')], [0, 0, 0, 0])
  t.same(s.saved, [['alpha:alive'], ['alpha:alive']], 'saved when it joined, and its latest figures on the way out')
})

t.test('a pulse naming a record we lack: one ask, then the record makes a whole member', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  const b = sampleBeacon({ name: 'alpha', startedAt: 5, seq: 1, addrs: ['/ip4/10.0.0.9/tcp/4001'], cpus: 8 })
  s.pulse(peer, b)
  s.pulse(peer, { ...b, seq: 2 })
  t.same({ wanted: s.asks.wanted, member: s.membership.get(peer), beacons: s.heard.beacons }, { wanted: [peer], member: undefined, beacons: [] },
    'two pulses of a stranger: asked once, not a member yet (no name, no addresses)')
  s.wire(peer, beaconMessage({ ...b, seq: 3 }))
  t.match(s.membership.get(peer), { name: 'alpha', state: 'alive', addrs: ['/ip4/10.0.0.9/tcp/4001'], health: { cpus: 8 } }, 'the record came: a whole member')
  s.pulse(peer, { ...b, seq: 4, cpuPct: 77 })
  t.same({ wanted: s.asks.wanted, beacons: s.heard.beacons }, { wanted: [peer], beacons: [[peer, 3], [peer, 4]] }, 'its pulses now rebuild whole beacons, no more asks')
  t.equal(s.membership.get(peer)?.health?.cpuPct, 77)
  t.equal(s.beacons.size, 1)
})

t.test('a known member whose record changed: its pulse still counts, with its last record, while we ask again each second', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  const b = sampleBeacon({ name: 'alpha', startedAt: 5, seq: 1, priority: 1 })
  s.beacon(peer, b)
  s.membership.observeDisconnect(peer)
  t.equal(s.membership.get(peer)?.state, 'suspect')
  s.pulse(peer, { ...b, seq: 2, priority: 9, term: 4 })
  t.match({ member: s.membership.get(peer), wanted: s.asks.wanted }, { member: { state: 'alive', health: { priority: 1, term: 4 } }, wanted: [peer] },
    'alive again and its term heard; the priority stays the last record\'s until the new one comes')
  s.pulse(peer, { ...b, seq: 3, priority: 9 })
  t.same(s.asks.wanted, [peer], 'not asked again within a second')
  await new Promise((resolve) => setTimeout(resolve, 1_050))
  s.pulse(peer, { ...b, seq: 4, priority: 9 })
  t.same(s.asks.wanted, [peer, peer], 'asked again after a second without it')
})

t.test('a beacon asking for our record is told on the bus; one asking for others is not', async (t) => {
  const s = await service(t)
  await s.service.start()
  const [asker, other] = [await newPeer(), await newPeer()]
  s.pulse(asker, sampleBeacon({ name: 'asker' }), { ask: [other] })
  s.pulse(asker, sampleBeacon({ name: 'asker', seq: 2 }), { ask: [other, s.selfId] })
  t.same(s.asks.asked, [asker])
})

t.test('a reaped member\'s record is forgotten', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  s.beacon(peer, sampleBeacon({ name: 'alpha' }))
  t.equal(s.beacons.size, 1)
  s.membership.observeDisconnect(peer)
  s.membership.takeProbes(1)
  s.membership.observeProbe(peer, 'refused')
  s.advance(OPTIONS.reapAfterMs)
  s.membership.tick()
  t.same({ member: s.membership.get(peer), kept: s.beacons.size }, { member: undefined, kept: 0 })
})

t.test('member-met (an early beacon from us, with our record) for a newcomer and for a member back from dead, not for one back from a blip', async (t) => {
  const s = await service(t)
  await s.service.start()
  const peer = await newPeer()
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 1 }))
  t.equal(s.heard.met, 1, 'a newcomer')
  s.membership.observeDisconnect(peer)
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 2 }))
  t.same({ state: s.membership.get(peer)?.state, met: s.heard.met }, { state: 'alive', met: 1 }, 'back from suspect: alive, not met again')
  s.membership.observeDisconnect(peer)
  s.membership.takeProbes(1)
  s.membership.observeProbe(peer, 'refused')
  s.beacon(peer, sampleBeacon({ name: 'alpha', seq: 3 }))
  t.same({ state: s.membership.get(peer)?.state, met: s.heard.met }, { state: 'alive', met: 2 }, 'back from dead: met again')
})

t.test('partial mesh: our own probe finding a member dead is told to the mesh once; a verdict heard makes us probe, never list it dead', async (t) => {
  const s = await service(t, [], { verdicts: true, partialMesh: true })
  await s.service.start()
  const [dead, liar, far] = [await newPeer(), await newPeer(), await newPeer()]
  s.beacon(dead, sampleBeacon({ name: 'dead', startedAt: 5, seq: 7 }))
  s.beacon(far, sampleBeacon({ name: 'far', startedAt: 6, seq: 1 }))
  // Its last connection closed: in a partial mesh, probed at once (and its connection refused).
  s.membership.observeDisconnect(dead)
  t.same(s.membership.takeProbes(), [dead], 'probed')
  s.membership.observeProbe(dead, 'refused')
  t.equal(s.membership.get(dead)?.state, 'dead')
  t.same(s.published.filter((p) => (p as { topic: string }).topic === memberVerdictCodec.topic).map((p) => (p as { value: unknown }).value),
    [{ v: 1, peerId: dead, about: { startedAt: 5, seq: 7 } }], 'one verdict, naming the beacon it was found dead against')

  // Another member says `far` died: we probe it at once; it answers, and stays alive. Nothing is told.
  s.verdict(liar, { v: 1, peerId: far, about: { startedAt: 6, seq: 1 } })
  t.same([s.membership.get(far)?.state, s.heard.disconnects.at(-1), s.membership.takeProbes()], ['alive', far, [far]], 'alive, and probed now')
  s.membership.observeProbe(far, 'answered')
  t.equal(s.membership.get(far)?.state, 'alive')
  s.verdict(liar, { v: 1, peerId: far, about: { startedAt: 6, seq: 1 } })
  t.same(s.membership.takeProbes(), [], 'the same verdict again: no second probe')
  // Had it died: our probe agrees with the verdict, and we say nothing more.
  s.verdict(liar, { v: 1, peerId: far, about: { startedAt: 6, seq: 2 } })
  t.same(s.membership.takeProbes(), [far])
  s.membership.observeProbe(far, 'refused')
  t.equal(s.membership.get(far)?.state, 'dead')
  t.equal(s.published.filter((p) => (p as { topic: string }).topic === memberVerdictCodec.topic).length, 1, 'no second verdict for the same death')

  // Void: about an older beacon than we hold, about ourselves, about a stranger.
  const back = await newPeer()
  s.beacon(back, sampleBeacon({ name: 'back', startedAt: 9, seq: 3 }))
  for (const v of [{ peerId: back, about: { startedAt: 9, seq: 2 } }, { peerId: back, about: { startedAt: 8, seq: 99 } }, { peerId: s.selfId, about: { startedAt: 0, seq: 0 } }, { peerId: await newPeer(), about: { startedAt: 0, seq: 0 } }]) {
    s.verdict(liar, { v: 1, ...v })
  }
  t.same(s.membership.takeProbes(), [], 'no probe for any of them')
})

t.test('a full mesh tells no verdicts: every member holds its own connection to the dead one', async (t) => {
  const s = await service(t)
  await s.service.start()
  const dead = await newPeer()
  s.beacon(dead, sampleBeacon({ name: 'dead', startedAt: 5, seq: 7 }))
  s.membership.observeDisconnect(dead)
  t.same(s.membership.takeProbes(), [dead])
  s.membership.observeProbe(dead, 'refused')
  t.same([s.membership.get(dead)?.state, s.published.filter((p) => (p as { topic: string }).topic === memberVerdictCodec.topic)], ['dead', []])
})
