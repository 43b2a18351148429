import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import t from 'tap'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { LoopLag } from '../../../agent/membership/loop-lag.ts'
import { FAR_SILENCE, Membership } from '../../../agent/membership/membership.ts'
import { Prober, PROBE_TICK_MS } from '../../../agent/membership/prober.ts'
import type { MeshNode } from '../../../agent/mesh/mesh.ts'
import { createLogger } from '../../../common/logger.ts'
import { eventually } from '../../helpers/eventually.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

// In a partial mesh the prober hands a connection its ping had to open to `release` (the dialer keeps or closes
// it: test/agent/mesh/dialer-partial); in a full mesh, and where a connection was there already, it leaves it.

async function probeOnce (t: { teardown: (fn: () => void) => void }, o: { partialMesh: boolean, connected: boolean }) {
  const peer: PeerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const released: string[] = []
  const node = {
    getMultiaddrs: () => [],
    getConnections: () => o.connected ? [{ remotePeer: peer }] : [],
    services: { ping: { ping: async () => 1 } }
  }
  let now = 1_000_000
  const membership = new Membership({
    self: { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: now, health: null },
    options: { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000, partialMesh: o.partialMesh },
    now: () => now
  })
  membership.observeBeacon(peer.toString(), sampleBeacon({ name: 'one', startedAt: 1, seq: 1 }))
  // Silent long enough to be probed, whether held connected or not (Membership.takeProbes).
  now += 1_000 * FAR_SILENCE
  const prober = new Prober({ node: node as unknown as MeshNode, membership, bus: new MemberBus(), lag: new LoopLag({ expectedMs: PROBE_TICK_MS }), log: createLogger('silent'), metrics: new MetricsStore(), probeTimeoutMs: 250, release: o.partialMesh ? (p) => { released.push(p.toString()) } : undefined })
  prober.start()
  t.teardown(() => { prober.stop() })
  prober.probeDue()
  const silence = await eventually(() => membership.silenceOf(peer.toString()), 0)
  return { released, peer: peer.toString(), silence }
}

t.test('partial mesh: the connection the probe opened is released after it', async (t) => {
  const { released, peer, silence } = await probeOnce(t, { partialMesh: true, connected: false })
  t.equal(silence, 0, 'the member answered')
  t.same(await eventually(() => released, [peer]), [peer])
})

t.test('partial mesh, a connection there already, or a full mesh: nothing is released', async (t) => {
  for (const o of [{ partialMesh: true, connected: true }, { partialMesh: false, connected: false }]) {
    const { released, silence } = await probeOnce(t, o)
    t.same([silence, released], [0, []], `${JSON.stringify(o)}: answered, nothing released`)
  }
})
