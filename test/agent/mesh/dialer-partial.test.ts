import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import t from 'tap'
import { CONNECTION_GRACE_MS, CONNECTION_SLACK, PeerDialer, RECONNECT_INTERVAL_MS } from '../../../agent/mesh/dialer.ts'
import type { MeshNode } from '../../../agent/mesh/mesh.ts'
import type { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { createLogger } from '../../../common/logger.ts'
import { eventually } from '../../helpers/eventually.ts'

// The dialer in a partial mesh (mesh.connections K > 0), with a fake libp2p node: it dials at most K peers, and
// closes the newest connections past K + CONNECTION_SLACK once they had their grace.

const newPeerId = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/** Connections by peer, each with when it opened; a dial connects once its promise settles. */
class FakeNode extends EventTarget {
  readonly dials: string[] = []
  readonly hungUp: string[] = []
  readonly connections = new Map<string, { remotePeer: PeerId, timeline: { open: number } }>()
  readonly peerStore = { merge: async () => {} }
  readonly peerId: PeerId

  constructor (peerId: PeerId) {
    super()
    this.peerId = peerId
  }

  getPeers (): PeerId[] { return [...this.connections.values()].map((c) => c.remotePeer) }
  getConnections (peer?: PeerId): unknown[] {
    return peer == null ? [...this.connections.values()] : this.connections.has(peer.toString()) ? [{}] : []
  }

  async dial (peer: PeerId): Promise<void> {
    this.dials.push(peer.toString())
    await Promise.resolve()
    this.connect(peer, Date.now())
  }

  connect (peer: PeerId, open: number): void { this.connections.set(peer.toString(), { remotePeer: peer, timeline: { open } }) }

  async hangUp (peer: PeerId): Promise<void> {
    this.hungUp.push(peer.toString())
    this.connections.delete(peer.toString())
  }
}

async function setup (t: { teardown: (fn: () => void) => void }, maxConnections: number, listedDead?: () => string[], now?: () => number) {
  const node = new FakeNode(await newPeerId())
  const dialer = new PeerDialer({
    node: node as unknown as MeshNode,
    log: createLogger('silent'),
    metrics: { inc: () => {} } as unknown as MetricsStore,
    redialIntervalMs: 1_000,
    maxConnections,
    listedDead,
    now
  })
  t.teardown(() => { dialer.stop() })
  return { node, dialer }
}

t.test('K = 2: two of five members are dialled; when one connection closes, another member is', async (t) => {
  const { node, dialer } = await setup(t, 2)
  const peers = await Promise.all([1, 2, 3, 4, 5].map(async () => (await newPeerId()).toString()))
  await Promise.all(peers.map((p) => dialer.want(p, [], 'member')))
  t.same(node.dials, peers.slice(0, 2), 'the first two wanted are dialled; not more while two are being dialled')
  await dialer.want(peers[4] as string, [], 'member')
  t.same(node.dials.length, 2, 'nor once they are connected')
  await eventually(() => node.connections.size, 2)
  const [gone] = node.dials
  node.connections.delete(gone as string)
  dialer.start()
  t.equal(await eventually(() => node.connections.size, 2, { timeoutMs: 2_000, intervalMs: 20 }), 2, 'back to two')
  t.equal(node.dials.length, 3, 'by one more dial')
  t.same(node.hungUp, [], 'nothing closed: under K + slack')
})

t.test('past K + slack, the newest connections past their grace are closed; a younger one waits out its grace and shields nobody', async (t) => {
  const { node, dialer } = await setup(t, 2)
  const now = Date.now()
  const peers = await Promise.all([1, 2, 3, 4, 5, 6, 7].map(async () => newPeerId()))
  // Seven peers dialled us, the oldest first; all but the newest are past their grace (a probe's short-lived one).
  peers.forEach((p, i) => { node.connect(p, now - (i < 6 ? CONNECTION_GRACE_MS * (10 - i) : 0)) })
  dialer.trim()
  await eventually(() => node.hungUp.length, 3)
  t.same(node.hungUp, [peers[5], peers[4], peers[3]].map(String), `the three newest past their grace closed, the young one kept: ${2 + CONNECTION_SLACK} left`)
  dialer.trim()
  t.same(node.hungUp.length, 3, 'nothing more: at K + slack')
})

t.test('K = 0 (full mesh): every wanted member is dialled, nothing is ever closed', async (t) => {
  const { node, dialer } = await setup(t, 0)
  const peers = await Promise.all([1, 2, 3, 4, 5].map(async () => (await newPeerId()).toString()))
  for (const p of peers) await dialer.want(p, [], 'member')
  t.same(node.dials, peers)
  dialer.trim()
  t.same(node.hungUp, [])
})

t.test('K = 1, full: one member listed dead is dialled anyway every RECONNECT_INTERVAL_MS (the other side of a healed partition), none listed alive', async (t) => {
  let clock = 1_000_000
  const dead = new Set<string>()
  const { node, dialer } = await setup(t, 1, () => [...dead], () => clock)
  const [partner, other, gone] = await Promise.all([1, 2, 3].map(async () => (await newPeerId()).toString())) as [string, string, string]
  await dialer.want(partner, [], 'member')
  await eventually(() => node.connections.size, 1)
  await dialer.want(other, [], 'member')
  dialer.start()
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.same(node.dials, [partner], 'full: a member listed alive is not dialled')
  // The partition: other is listed dead (its connection, had there been one, closed). The heal: it answers.
  dead.add(other)
  dead.add(gone) // listed dead but never wanted (forgotten): not ours to dial
  await eventually(() => node.dials.length, 2, { timeoutMs: 2_000, intervalMs: 20 })
  t.same(node.dials, [partner, other], 'the member listed dead is dialled although K are connected')
  t.same([...node.connections.keys()].sort(), [partner, other].sort(), 'and kept: within K + slack')
  // Listed dead but connected: not dialled again; another dead one waits out the interval.
  const third = (await newPeerId()).toString()
  await dialer.want(third, [], 'member')
  dead.add(third)
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.equal(node.dials.length, 2, 'at most one reconnect per interval')
  clock += RECONNECT_INTERVAL_MS
  await eventually(() => node.dials.length, 3, { timeoutMs: 2_000, intervalMs: 20 })
  t.same(node.dials, [partner, other, third])
})

t.test('a connection a probe opened and released is kept while the node is short of K peers, and closed once it has K', async (t) => {
  const { node, dialer } = await setup(t, 2)
  const [probed, other, third] = await Promise.all([newPeerId(), newPeerId(), newPeerId()])
  node.connect(probed, Date.now())
  dialer.release(probed)
  node.connect(other, Date.now())
  dialer.release(probed)
  t.same(node.hungUp, [], 'with 0, then 1 other peer (K 2): kept, the dialer wants it')
  node.connect(third, Date.now())
  dialer.release(probed)
  t.same(node.hungUp, [probed.toString()], 'with K = 2 others: closed')
})

t.test('in a full mesh (K 0) a released connection stays', async (t) => {
  const { node, dialer } = await setup(t, 0)
  const peers = await Promise.all([newPeerId(), newPeerId(), newPeerId()])
  for (const p of peers) node.connect(p, Date.now())
  dialer.release(peers[0] as PeerId)
  t.same(node.hungUp, [])
})
