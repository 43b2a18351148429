import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId } from '@libp2p/interface'
import t from 'tap'
import { DIAL_DROPPED_METRIC, HEARSAY_TTL_MS, MAX_HEARSAY_TARGETS, MAX_TARGET_ADDRS, PeerDialer } from '../../agent/mesh/dialer.ts'
import { createLogger } from '../../common/logger.ts'
import { MemberSync } from '../../agent/mesh/member-sync.ts'
import { Membership } from '../../agent/membership/membership.ts'
import { MemberBus } from '../../agent/membership/bus.ts'
import type { MeshNode } from '../../agent/mesh/mesh.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'

const newPeerId = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/** A node that is never connected to anyone and whose dials fail at once; it records what reaches the peer store. */
async function fakeNode () {
  const merged = new Map<string, number>()
  const dialled: string[] = []
  const node = {
    peerId: await newPeerId(),
    addEventListener: () => {},
    removeEventListener: () => {},
    getConnections: () => [],
    dial: async (peer: PeerId) => { dialled.push(peer.toString()); throw new Error('refused') },
    peerStore: { merge: async (peer: PeerId, { multiaddrs }: { multiaddrs: unknown[] }) => { merged.set(peer.toString(), (merged.get(peer.toString()) ?? 0) + multiaddrs.length) } }
  }
  return { node: node as unknown as MeshNode, merged, dialled }
}

async function setup (bootstrapPeers: string[] = []) {
  let now = 1_000_000
  const fake = await fakeNode()
  const metrics = new MetricsStore()
  const dialer = new PeerDialer({ node: fake.node, log: createLogger('silent'), metrics, redialIntervalMs: 500, bootstrapPeers, now: () => now })
  const dropped = () => metrics.series(DIAL_DROPPED_METRIC)
  return { dialer, fake, dropped, advance: (ms: number) => { now += ms } }
}

const addrs = (n: number, port = 4000) => Array.from({ length: n }, (_, i) => `/ip4/10.0.0.${i + 1}/tcp/${port}`)

t.test('addresses per peer are capped; the extra ones are counted and never reach the peer store', async (t) => {
  const { dialer, fake, dropped } = await setup()
  const peer = (await newPeerId()).toString()
  await dialer.want(peer, addrs(12))
  t.equal(fake.merged.get(peer), MAX_TARGET_ADDRS)
  t.same(dropped(), { addrs: 12 - MAX_TARGET_ADDRS })
  await dialer.want(peer, addrs(3, 5000), 'member')
  t.equal(fake.merged.get(peer), MAX_TARGET_ADDRS, 'a full target takes no more, a member\'s neither')
  t.same(dropped(), { addrs: 12 - MAX_TARGET_ADDRS + 3 })
  await dialer.want(peer, addrs(8))
  t.same(dropped(), { addrs: 7 }, 'addresses it knows already are not counted again')
})

t.test('targets learnt by hearsay are capped and expire unless they become members; members and bootstrap peers stay', async (t) => {
  const boot = await newPeerId()
  const { dialer, dropped, advance } = await setup([boot.toString()])
  const hearsay: string[] = []
  for (let i = 0; i < MAX_HEARSAY_TARGETS; i++) hearsay.push((await newPeerId()).toString())
  for (const peer of hearsay) await dialer.want(peer, addrs(1))
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS, hearsay: MAX_HEARSAY_TARGETS })

  const late = (await newPeerId()).toString()
  await dialer.want(late, addrs(1))
  t.same(dropped(), { targets: 1 }, 'one more stranger is dropped and counted')
  const member = (await newPeerId()).toString()
  await dialer.want(member, addrs(1), 'member')
  await dialer.want(boot.toString(), addrs(1))
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS + 2, hearsay: MAX_HEARSAY_TARGETS }, 'a member and a bootstrap peer are never crowded out')

  await dialer.want(hearsay[0] as string, [], 'member')
  dialer.forget(hearsay[1] as string)
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS + 1, hearsay: MAX_HEARSAY_TARGETS - 2 }, 'one sent a beacon, one left')

  advance(HEARSAY_TTL_MS - 1)
  dialer.expire()
  t.equal(dialer.size.hearsay, MAX_HEARSAY_TARGETS - 2, 'not yet')
  advance(1)
  dialer.expire()
  t.same(dialer.size, { targets: 3, hearsay: 0 }, 'the strangers expired; the member, the promoted one and the bootstrap peer stay')
  t.same(dropped(), { targets: 1, expired: MAX_HEARSAY_TARGETS - 2 })

  await dialer.want(late, addrs(1))
  t.same(dialer.size, { targets: 4, hearsay: 1 }, 'room again: a stranger heard of later is taken')
  dialer.stop()
  t.same(dialer.size, { targets: 0, hearsay: 0 })
})

t.test('a member list sent on join carries only addresses the receiver takes, 8 at most per member', async (t) => {
  const self = await newPeerId()
  const [listed, connected, told] = [await newPeerId(), await newPeerId(), await newPeerId()]
  const membership = new Membership({
    self: { peerId: self.toString(), name: 'self', state: 'alive', role: 'member', addrs: [], lastSeen: 0, health: null },
    options: { probeAfterMs: 1_000, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 60_000 }
  })
  // Remembered from an older run (a store written before addresses were checked).
  membership.restore([{ peerId: listed.toString(), name: 'old', state: 'alive', role: 'member', addrs: ['/ip4/10.0.0.1/tcp/4001', '/dns4/caf\u00e9.local/tcp/1', ...addrs(9, 5000)], lastSeen: 0, health: null }])
  const node = {
    peerId: self,
    getConnections: () => [{ remotePeer: connected }, { remotePeer: told }],
    peerStore: { get: async () => ({ addresses: [{ multiaddr: { toString: () => '/ip4/10.0.0.2/tcp/4001' } }, { multiaddr: { toString: () => `/unix/${'x'.repeat(300)}` } }] }) }
  }
  const sync = new MemberSync({ node: node as never, membership, dialer: {} as never, bus: new MemberBus(), deliver: () => {}, metrics: new MetricsStore(), log: createLogger('silent') })
  t.same(await sync.knownMembers(told), [
    { peerId: listed.toString(), addrs: ['/ip4/10.0.0.1/tcp/4001', ...addrs(7, 5000)] },
    { peerId: connected.toString(), addrs: ['/ip4/10.0.0.2/tcp/4001'] }
  ])
})
