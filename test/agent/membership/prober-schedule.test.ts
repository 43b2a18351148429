import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import t from 'tap'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { LoopLag } from '../../../agent/membership/loop-lag.ts'
import { Membership } from '../../../agent/membership/membership.ts'
import type { MembershipOptions } from '../../../agent/membership/membership.ts'
import { IDLE_TICK_MS, PROBE_TICK_MS, Prober } from '../../../agent/membership/prober.ts'
import type { MeshNode } from '../../../agent/mesh/mesh.ts'
import { createLogger } from '../../../common/logger.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

// The prober sleeps until the next member is due instead of polling every 50 ms, which woke an idle agent 20
// times a second: it must still ping a silent member on time, and a suspect one at once.

const options = (probeAfterMs: number): MembershipOptions => ({ probeAfterMs, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000 })
const self = { peerId: 'self', name: 'me', state: 'alive' as const, role: 'member' as const, addrs: [], lastSeen: 0, health: null }

t.test('msUntilProbe: when takeProbes would next hand out a member', async (t) => {
  let now = 1_000_000
  const membership = new Membership({ self, options: options(1_000), now: () => now })
  t.equal(membership.msUntilProbe(), Infinity, 'nobody but ourselves: never')
  membership.observeBeacon('p1', sampleBeacon({ name: 'one', startedAt: 1, seq: 1 }))
  now += 400
  t.same([membership.msUntilProbe(), membership.msUntilProbe(2)], [600, 1_600], 'a beacon late, widened by the scale')
  now += 600
  t.equal(membership.msUntilProbe(), 0, 'due now')
  t.same(membership.takeProbes(), ['p1'])
  t.equal(membership.msUntilProbe(), Infinity, 'a probe in flight is not due again')
  membership.observeProbe('p1', 'timeout')
  t.same([membership.get('p1')?.state, membership.msUntilProbe()], ['suspect', 0], 'a suspect is due at once')
  membership.takeProbes()
  membership.observeProbe('p1', 'knocked')
  t.same([membership.get('p1')?.state, membership.msUntilProbe()], ['suspect', 500], 'a slow one, two probe timeouts later')
  now += 500
  t.same(membership.takeProbes(), ['p1'], 'as takeProbes hands it out')
})

t.test('loop lag sampled at varying intervals: lateness against each one, decay with the time passed', async (t) => {
  let now = 0
  const lag = new LoopLag({ expectedMs: 50, now: () => now })
  lag.sample()
  now += 250
  t.equal(lag.sample(250), 0, 'a 250 ms sleep on time')
  now += 600
  t.equal(lag.sample(250), 350, '350 ms late')
  const often = new LoopLag({ expectedMs: 50, now: () => now })
  const rarely = new LoopLag({ expectedMs: 50, now: () => now })
  often.sample()
  rarely.sample()
  now += 500
  often.sample(0)
  rarely.sample(0)
  for (let i = 0; i < 20; i++) { now += 50; often.sample() }
  rarely.sample(1_000)
  t.equal(Math.abs(often.ms - rarely.ms) <= 1, true, `a second on time decays it alike: ${often.ms} and ${rarely.ms} ms`)
})

async function setup (t: { teardown: (fn: () => void) => void }, probeAfterMs: number) {
  const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const pings: number[] = []
  const startedAt = performance.now()
  const node = {
    getMultiaddrs: () => [],
    getConnections: () => [{}],
    // Never answers: the probe stays in flight, so each member is pinged once.
    services: { ping: { ping: async () => { pings.push(performance.now() - startedAt); return await new Promise<number>(() => {}) } } },
    hangUp: async () => {}
  }
  const membership = new Membership({ self, options: options(probeAfterMs) })
  membership.observeBeacon(peer, sampleBeacon({ name: 'one', startedAt: 1, seq: 1 }))
  let samples = 0
  const lag = new LoopLag({ expectedMs: PROBE_TICK_MS })
  const sample = lag.sample.bind(lag)
  lag.sample = (expectedMs?: number) => { samples++; return sample(expectedMs) }
  const prober = new Prober({ node: node as unknown as MeshNode, membership, bus: new MemberBus(), lag, log: createLogger('silent'), metrics: new MetricsStore(), probeTimeoutMs: 60_000 })
  prober.start()
  t.teardown(() => { prober.stop() })
  return { peer, pings, membership, samples: () => samples, since: () => performance.now() - startedAt }
}

const sleep = async (ms: number) => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('a silent member is pinged when its beacon is late, with nothing due before: a few wakeups a second', async (t) => {
  const { pings, samples } = await setup(t, 700)
  await sleep(1_000)
  t.equal(pings.length, 1, 'pinged once')
  t.equal((pings[0] ?? 0) >= 690 && (pings[0] ?? 0) < 700 + IDLE_TICK_MS, true, `pinged ${Math.round(pings[0] ?? 0)} ms after its beacon (due at 700)`)
  t.equal(samples() <= Math.ceil(1_000 / IDLE_TICK_MS) + 3, true, `${samples()} looks in a second, not ${1_000 / PROBE_TICK_MS}`)
})

t.test('a member made suspect while the prober sleeps is pinged at once', async (t) => {
  const { peer, pings, membership, since } = await setup(t, 60_000)
  // Past the first tick: the next is IDLE_TICK_MS away.
  await sleep(PROBE_TICK_MS + 20)
  const madeSuspectAt = since()
  membership.observeVerdict(peer, 'suspect', membership.beaconOf(peer) ?? { startedAt: 0, seq: 0 }, 'test')
  await sleep(IDLE_TICK_MS)
  t.equal(pings.length, 1, 'pinged')
  const after = (pings[0] ?? Infinity) - madeSuspectAt
  t.equal(after < IDLE_TICK_MS - 50, true, `${Math.round(after)} ms after it became suspect, not at the idle tick`)
})

// The TCP knock beside a ping tells a starved member from a gone one; it is only needed when the ping goes
// unanswered, and each costs both boxes a connection, so an answered ping goes without.
async function knockSetup (t: { teardown: (fn: () => void) => void }, ping: () => Promise<number>, listening: boolean) {
  const accepted: number[] = []
  const server = createServer((socket) => { accepted.push(1); socket.destroy() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  if (!listening) await new Promise((resolve) => server.close(resolve))
  t.teardown(() => { server.close() })
  const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const node = { getMultiaddrs: () => [], getConnections: () => [{}], services: { ping: { ping } }, hangUp: async () => {} }
  const membership = new Membership({ self, options: { ...options(60_000), probeTimeoutMs: 300 } })
  membership.observeBeacon(peer, sampleBeacon({ name: 'one', startedAt: 1, seq: 1, addrs: [`/ip4/127.0.0.1/tcp/${port}`] }))
  const prober = new Prober({ node: node as unknown as MeshNode, membership, bus: new MemberBus(), lag: new LoopLag({ expectedMs: PROBE_TICK_MS }), log: createLogger('silent'), metrics: new MetricsStore(), probeTimeoutMs: 300 })
  prober.start()
  t.teardown(() => { prober.stop() })
  membership.observeVerdict(peer, 'suspect', membership.beaconOf(peer) ?? { startedAt: 0, seq: 0 }, 'probe it now')
  return { accepted, state: () => membership.get(peer)?.state }
}

t.test('an answered ping: no knock', async (t) => {
  const { accepted, state } = await knockSetup(t, async () => 1, true)
  await sleep(500)
  t.same([state(), accepted.length], ['alive', 0])
})

t.test('a ping unanswered: the knock finds the box up (suspect, slow), within the probe timeout', async (t) => {
  const { accepted, state } = await knockSetup(t, async () => await new Promise<number>(() => {}), true)
  await sleep(450)
  t.same([state(), accepted.length], ['suspect', 1])
})

t.test('a ping that fails at once: the knock goes at once and finds nothing listening (dead)', async (t) => {
  const { state } = await knockSetup(t, async () => { throw new Error('the stream was reset') }, false)
  await sleep(100)
  t.equal(state(), 'dead')
})
