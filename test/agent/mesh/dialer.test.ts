import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import t from 'tap'
import { DIAL_DROPPED_METRIC, HEARSAY_TTL_MS, KNOCK_MS, KNOCKED_DIAL_TIMEOUT_MS, MAX_HEARSAY_TARGETS, MAX_TARGET_ADDRS, PeerDialer } from '../../../agent/mesh/dialer.ts'
import type { MeshNode } from '../../../agent/mesh/mesh.ts'
import type { Knock } from '../../../agent/mesh/knock.ts'
import type { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { createLogger } from '../../../common/logger.ts'
import { eventually } from '../../helpers/eventually.ts'

// Unit tests with a fake libp2p node: the dialer's own rules (what it dials, when, and what it counts), no sockets.

const newPeerId = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const addr = (port: number) => `/ip4/10.0.0.1/tcp/${port}`

type Dial = (peer: PeerId, signal: AbortSignal) => Promise<void>
const refused: Dial = () => Promise.reject(new Error('ECONNREFUSED'))

/** The members of a libp2p node the dialer uses; every dial is recorded with the fake time it was made at. */
class FakeNode extends EventTarget {
  readonly dials: Array<{ peer: string, at: number }> = []
  readonly merged: Array<{ peer: string, addrs: string[] }> = []
  readonly connected = new Set<string>()
  dialWith: Dial = refused
  readonly peerStore = {
    merge: async (peer: PeerId, data: { multiaddrs: unknown[] }) => { this.merged.push({ peer: peer.toString(), addrs: data.multiaddrs.map(String) }) }
  }

  readonly peerId: PeerId
  private readonly clock: FakeClock

  constructor (peerId: PeerId, clock: FakeClock) {
    super()
    this.peerId = peerId
    this.clock = clock
  }

  getConnections (peer: PeerId): unknown[] { return this.connected.has(peer.toString()) ? [{}] : [] }

  dial (peer: PeerId, options: { signal: AbortSignal }): Promise<void> {
    this.dials.push({ peer: peer.toString(), at: this.clock.time })
    return this.dialWith(peer, options.signal)
  }
}

class FakeClock {
  time = 0
  readonly now = (): number => this.time
}

/** What the dialer counts, as [metric, labels, by]. */
class CountingMetrics {
  readonly counted: Array<[string, Record<string, string | number> | undefined, number]> = []
  inc (name: string, labels?: Record<string, string | number>, by = 1): void { this.counted.push([name, labels, by]) }
}

async function setup (t: { teardown: (fn: () => void) => void }, o: { redialIntervalMs?: number, bootstrapPeers?: string[], knock?: Knock } = {}) {
  const clock = new FakeClock()
  const node = new FakeNode(await newPeerId(), clock)
  const metrics = new CountingMetrics()
  const dialer = new PeerDialer({
    node: node as unknown as MeshNode,
    log: createLogger('silent'),
    metrics: metrics as unknown as MetricsStore,
    redialIntervalMs: o.redialIntervalMs ?? 1_000,
    bootstrapPeers: o.bootstrapPeers,
    now: clock.now,
    knock: o.knock
  })
  t.teardown(() => { dialer.stop() })
  return { clock, node, metrics, dialer }
}

/** Lets the dialed promise settle (the fake dial answers at once). */
const settled = () => new Promise((resolve) => setImmediate(resolve))

t.test('a wanted peer is dialled at once, its new addresses go to the peer store once, and ourselves never', async (t) => {
  const { node, dialer } = await setup(t)
  const peer = (await newPeerId()).toString()
  await dialer.want(peer, [addr(1), addr(2), addr(1)])
  t.same(node.dials.map((d) => d.peer), [peer], 'dialled at once')
  t.same(node.merged, [{ peer, addrs: [addr(1), addr(2)] }], 'each address given to the peer store once')
  await settled()

  await dialer.want(peer, [addr(2)])
  t.same(node.merged.length, 1, 'an address already given is not merged again')
  t.same(node.dials.length, 1, 'nor is the peer dialled again outside its backoff')
  await dialer.want(peer, [addr(3), 'not a multiaddr'])
  t.same(node.merged[1], { peer, addrs: [addr(3)] }, 'a new address is merged (an unreadable one is not)')
  t.same(node.dials.length, 2, 'and tried at once')

  await dialer.want(node.peerId.toString(), [addr(9)])
  const connected = (await newPeerId()).toString()
  node.connected.add(connected)
  await dialer.want(connected)
  t.same(node.dials.map((d) => d.peer), [peer, peer], 'our own peer id and a connected peer are not dialled')
  t.same(dialer.size, { targets: 2, hearsay: 2 }, 'the connected peer is still kept, to redial if it drops')
})

t.test('quick failures back off from 250 ms, doubling up to the redial interval; a connection resets it', async (t) => {
  const { clock, node, dialer } = await setup(t, { redialIntervalMs: 1_000 })
  const peer = (await newPeerId()).toString()
  dialer.start()
  await dialer.want(peer)
  await settled()
  // Each step: just before the peer is due nothing is dialled; once it is due, the next tick (every 250 ms) dials.
  for (const due of [250, 750, 1_750, 2_750]) {
    clock.time = due - 1
    await sleep(300)
    clock.time = due
    const dialled = node.dials.length + 1
    t.equal(await eventually(() => node.dials.length, dialled, { timeoutMs: 2_000, intervalMs: 10 }), dialled, `dial ${dialled} at ${due} ms`)
    await settled()
  }
  t.same(node.dials.map((d) => d.at), [0, 250, 750, 1_750, 2_750], 'waits of 250, 500, 1000 ms, then 1000 (the redial interval)')

  // A connection (made by either side) resets the backoff: the peer is due at once, and 250 ms after a failure.
  clock.time = 3_000
  node.dispatchEvent(new CustomEvent('peer:connect', { detail: peerIdFromString(peer) }))
  t.equal(await eventually(() => node.dials.length, 6, { timeoutMs: 2_000, intervalMs: 10 }), 6, 'dialled on the next tick after the connection')
  await settled()
  clock.time = 3_250
  t.equal(await eventually(() => node.dials.length, 7, { timeoutMs: 2_000, intervalMs: 10 }), 7)
  t.same(node.dials.slice(5).map((d) => d.at), [3_000, 3_250], 'the backoff starts again from 250 ms')
})

t.test('a dial that succeeds resets the backoff: after the connection drops, the wait is 250 ms again', async (t) => {
  const { clock, node, dialer } = await setup(t, { redialIntervalMs: 1_000 })
  const peer = (await newPeerId()).toString()
  dialer.start()
  await dialer.want(peer)
  await settled()
  clock.time = 250
  node.dialWith = async (id) => { node.connected.add(id.toString()) }
  t.equal(await eventually(() => node.dials.length, 2, { timeoutMs: 2_000, intervalMs: 10 }), 2, 'connected at the second try')
  await settled()
  node.connected.delete(peer)
  node.dialWith = refused
  clock.time = 400
  t.equal(await eventually(() => node.dials.length, 3, { timeoutMs: 2_000, intervalMs: 10 }), 3, 'redialled once the connection is gone')
  await settled()
  clock.time = 649
  await sleep(300)
  clock.time = 650
  t.equal(await eventually(() => node.dials.length, 4, { timeoutMs: 2_000, intervalMs: 10 }), 4)
  t.same(node.dials.map((d) => d.at), [0, 250, 400, 650], 'the failure after the success waits 250 ms, not 500')
})

t.test('a dial that hangs is given up after its timeout and tried again at once, without backing off', async (t) => {
  const { node, dialer } = await setup(t, { redialIntervalMs: 200 })
  const signals: AbortSignal[] = []
  node.dialWith = (_peer, signal) => {
    signals.push(signal)
    // Answered a little after the abort: a timer may fire a millisecond before Date.now() shows the full timeout.
    return new Promise((resolve, reject) => { signal.addEventListener('abort', () => { setTimeout(() => { reject(signal.reason as Error) }, 5) }) })
  }
  const peer = (await newPeerId()).toString()
  dialer.start()
  const started = Date.now()
  await dialer.want(peer)
  // The clock stays at 0: a backoff would hold the redial back for good.
  t.equal(await eventually(() => node.dials.length, 2, { timeoutMs: 5_000, intervalMs: 10 }), 2, 'dialled again though no time passed')
  const waited = Date.now() - started
  t.ok(waited >= 1_000, `the first dial was given up after its 1 s timeout, not before (${waited} ms)`)
  t.match(signals[0]?.reason, { name: 'TimeoutError' }, 'by its abort signal')
})

t.test('after a dial hung, a member is knocked each tick and dialled only once its port answers; hearsay is only dialled', async (t) => {
  const knocks: Array<{ at: Array<{ host: string, port: number }>, timeoutMs: number }> = []
  const answers: Array<'failed' | 'connected'> = ['failed', 'failed', 'failed']
  const { node, dialer } = await setup(t, {
    redialIntervalMs: 200,
    knock: async (at, timeoutMs) => { knocks.push({ at: [...at], timeoutMs }); return answers.shift() ?? 'connected' }
  })
  node.dialWith = (_peer, signal) => new Promise((resolve, reject) => { signal.addEventListener('abort', () => { setTimeout(() => { reject(signal.reason as Error) }, 5) }) })
  const peer = (await newPeerId()).toString()
  dialer.start()
  await dialer.want(peer, [addr(4001)], 'member')
  t.equal(await eventually(() => knocks.length, (n) => n >= 3, { timeoutMs: 5_000, intervalMs: 10 }) >= 3, true, 'knocked again and again')
  t.equal(node.dials.length, 1, 'and not dialled while nothing answers')
  t.same(knocks[0], { at: [{ host: '10.0.0.1', port: 4001 }], timeoutMs: KNOCK_MS }, 'at its address, for KNOCK_MS')
  const signals: AbortSignal[] = []
  node.dialWith = async (_peer, signal) => { signals.push(signal); node.connected.add(peer) }
  const dialledAt = Date.now()
  t.equal(await eventually(() => node.dials.length, 2, { timeoutMs: 2_000, intervalMs: 10 }), 2, 'its port answered: dialled')
  // The link works: the dial gets KNOCKED_DIAL_TIMEOUT_MS, not the 1 s that finds a cut (its signal is still live after 1.2 s).
  await sleep(Math.max(0, 1_200 - (Date.now() - dialledAt)))
  t.equal(signals[0]?.aborted, false, `a dial after an answered knock has ${KNOCKED_DIAL_TIMEOUT_MS} ms`)

  // Hearsay (another member's list, mDNS): no knocks aimed where it says, only the dials as before.
  const before = knocks.length
  const heard = (await newPeerId()).toString()
  node.dialWith = (_peer, signal) => new Promise((resolve, reject) => { signal.addEventListener('abort', () => { setTimeout(() => { reject(signal.reason as Error) }, 5) }) })
  await dialer.want(heard, [addr(4002)])
  t.equal(await eventually(() => node.dials.filter((d) => d.peer === heard).length, 2, { timeoutMs: 5_000, intervalMs: 10 }), 2, 'dialled again after its dial hung')
  t.equal(knocks.length, before, 'never knocked')
})

t.test('bootstrap and member targets are kept; hearsay is capped, and expires; what is dropped is counted by reason', async (t) => {
  const boot = (await newPeerId()).toString()
  const { clock, node, metrics, dialer } = await setup(t, { bootstrapPeers: [boot] })
  const member = (await newPeerId()).toString()
  const heard = (await newPeerId()).toString()
  await dialer.want(boot)
  await dialer.want(member, [], 'member')
  await dialer.want(heard, Array.from({ length: MAX_TARGET_ADDRS + 3 }, (_, i) => addr(i + 1)))
  t.same(dialer.size, { targets: 3, hearsay: 1 }, 'a bootstrap peer counts as a member whoever names it')
  t.equal(node.merged[0]?.addrs.length, MAX_TARGET_ADDRS, `${MAX_TARGET_ADDRS} addresses kept per target`)
  t.same(metrics.counted, [[DIAL_DROPPED_METRIC, { reason: 'addrs' }, 3]], 'the 3 others are counted as dropped')

  clock.time = HEARSAY_TTL_MS - 1
  dialer.expire()
  t.same(dialer.size, { targets: 3, hearsay: 1 }, 'hearsay is kept for its time')
  clock.time = HEARSAY_TTL_MS
  dialer.expire()
  t.same(dialer.size, { targets: 2, hearsay: 0 }, 'then given up; the bootstrap peer and the member stay')
  t.same(metrics.counted.slice(1), [[DIAL_DROPPED_METRIC, { reason: 'expired' }, 1]])

  // A bootstrap peer is redialled after any time, as long as it is down.
  await settled()
  const before = node.dials.filter((d) => d.peer === boot).length
  dialer.start()
  t.equal(await eventually(() => node.dials.filter((d) => d.peer === boot).length, before + 1, { timeoutMs: 2_000, intervalMs: 10 }), before + 1,
    'the bootstrap peer is dialled again')
})

t.test('at most MAX_HEARSAY_TARGETS peers by hearsay; a member is always taken, and a member\'s word promotes one', async (t) => {
  const { metrics, dialer } = await setup(t)
  const peers = await Promise.all(Array.from({ length: MAX_HEARSAY_TARGETS + 1 }, async () => (await newPeerId()).toString()))
  for (const p of peers) await dialer.want(p)
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS, hearsay: MAX_HEARSAY_TARGETS })
  t.same(metrics.counted, [[DIAL_DROPPED_METRIC, { reason: 'targets' }, 1]], 'the one over the cap is counted')

  await dialer.want(peers.at(-1) as string, [], 'member')
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS + 1, hearsay: MAX_HEARSAY_TARGETS }, 'a member is taken over the cap')
  await dialer.want(peers[0] as string, [], 'member')
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS + 1, hearsay: MAX_HEARSAY_TARGETS - 1 }, 'hearsay promoted to member')
  dialer.forget(peers[1] as string)
  dialer.forget(peers[0] as string)
  t.same(dialer.size, { targets: MAX_HEARSAY_TARGETS - 1, hearsay: MAX_HEARSAY_TARGETS - 2 }, 'forgetting counts each kind down')
  t.equal(metrics.counted.length, 1, 'nothing else was dropped')
})

t.test('discovery leads to a dial; stop ends the timer, the listeners and the targets', async (t) => {
  const { clock, node, dialer } = await setup(t, { redialIntervalMs: 20 })
  dialer.start()
  const found = await newPeerId()
  node.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: found, multiaddrs: [addr(7)] } }))
  t.same(await eventually(() => node.dials.map((d) => d.peer).slice(0, 1), [found.toString()], { intervalMs: 10 }), [found.toString()], 'a discovered peer is dialled')
  t.same(node.merged, [{ peer: found.toString(), addrs: [addr(7)] }])
  // The peer store refusing a discovered peer's addresses is logged, not thrown; the peer is kept for the timer.
  node.peerStore.merge = () => Promise.reject(new Error('peer store closed'))
  node.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: await newPeerId(), multiaddrs: [addr(9)] } }))
  await settled()
  t.same(dialer.size, { targets: 2, hearsay: 2 })

  dialer.stop()
  t.same(dialer.size, { targets: 0, hearsay: 0 })
  const dialled = node.dials.length
  clock.time = 60_000
  node.dispatchEvent(new CustomEvent('peer:discovery', { detail: { id: await newPeerId(), multiaddrs: [addr(8)] } }))
  await sleep(100)
  t.equal(node.dials.length, dialled, 'no dial after stop: not on a tick, not on discovery')
})
