import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import type { NodeView } from '../../../agent/api/views.ts'
import { beaconMessage, healthCodec } from '../../../protocols/health.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'
import { bootstrapAddr, gossip, nodes, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { agentAndMember } from '../../helpers/bare-node.ts'
import { eventually } from '../../helpers/eventually.ts'
import { startMosquitto } from '../../helpers/mosquitto.ts'

// Real agent processes: what one lists of another, from v2 pulses and its record, is what that one shows of itself.

t.test('v2 pulses and records carry everything `noodle nodes` shows of a member', async (t) => {
  const broker = await startMosquitto()
  t.teardown(() => broker.stop())
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const a = await startAgent({ root, name: 'alpha', swarmKeyFile })
  const b = await startAgent({
    root,
    name: 'bravo',
    swarmKeyFile,
    bootstrap: [await bootstrapAddr(a)],
    config: {
      mqtt: { url: broker.url, topics: ['shapes/#'] },
      work: [{ id: 'twin', kind: 'model', cpuPct: 0, accelerator: 'none' }]
    }
  })
  t.teardown(() => stopAgents([a, b]))

  const selfView = async (): Promise<NodeView | undefined> => (await nodes(b)).find((n) => n.peerId === b.peerId)
  const seenByA = async (): Promise<NodeView | undefined> => (await nodes(a)).find((n) => n.peerId === b.peerId)
  // Its ingest is connected in its own view, then in the pulses alpha hears.
  await waitFor('bravo\'s ingest to be connected as alpha sees it', async () => (await seenByA())?.ingest?.connected === true, 30_000)
  // What changes seldom (the record) and what a pulse carries that stays put here.
  const settled = (n: NodeView) => ({
    name: n.name,
    state: n.state,
    role: n.role,
    term: n.term,
    running: n.running,
    providers: n.providers,
    models: n.models,
    addrs: n.addrs,
    memTotalBytes: n.health?.memTotalBytes,
    ingestConnected: n.ingest?.connected
  })
  // Read until the two views are of the same moment: an election (the term) may land between two reads.
  const [own, seen] = await eventually(async () => [await selfView(), await seenByA()] as const,
    ([o, s]) => o !== undefined && s !== undefined && JSON.stringify(settled(o)) === JSON.stringify(settled(s)), { timeoutMs: 10_000 })
  if (own === undefined || seen === undefined) throw new Error('bravo not listed')
  t.same(settled(seen), settled(own), 'alpha lists bravo as bravo lists itself')
  t.match(seen.ingest, { received: Number, stored: Number, rejected: Number, perS: Number, brokerDropped: Number, connected: true }, 'its ingest figures travel')
  // The figures that change were sampled at different beacons: each is there, of its kind, and near.
  t.match(seen.health, { cpuPct: Number, load1: Number, memUsedBytes: Number, diskFreeBytes: Number, uptimeS: Number })
  t.ok(Math.abs((seen.health?.uptimeS ?? 0) - (own.health?.uptimeS ?? 0)) < 5, `uptime ${seen.health?.uptimeS} s against ${own.health?.uptimeS} s`)
  t.ok(Math.abs((seen.health?.diskFreeBytes ?? 0) - (own.health?.diskFreeBytes ?? 0)) < 1e9, 'free disk')

  const { rejected } = await gossip(a)
  t.same(Object.keys(rejected).filter((key) => key.endsWith(TOPICS.nodeHealth)), [], 'no health message refused between two agents')
})

t.test('a member asking for an agent\'s record every 10 ms gets it about once a second', async (t) => {
  const { agent: victim, member: rogue } = await agentAndMember(t, { name: 'victim' })
  const records: number[] = []
  rogue.services.pubsub.addEventListener('message', (event) => {
    const decoded = event.detail.topic === TOPICS.nodeHealth ? healthCodec.decode(event.detail.data) : undefined
    if (decoded?.ok === true && decoded.value.record !== undefined) records.push(performance.now())
  })
  rogue.services.pubsub.subscribe(TOPICS.nodeHealth)
  await rogue.dial(multiaddr(await bootstrapAddr(victim)))
  await waitFor('the victim to listen to beacons', () => rogue.services.pubsub.getSubscribers(TOPICS.nodeHealth).some((p) => p.toString() === victim.peerId))
  const startedAt = Date.now()
  let seq = 0
  const send = (ask: string[]) => rogue.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode({ ...beaconMessage(sampleBeacon({ name: 'rogue', startedAt, seq: ++seq })), ask }))
  await send([])
  await waitFor('the victim to list the rogue', async () => (await nodes(victim)).some((n) => n.name === 'rogue'))
  // The victim answered the newcomer with its record (news); the loop starts once that is past.
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  const from = performance.now()
  while (performance.now() - from < 3_000) {
    await send([victim.peerId])
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
  const answered = records.filter((at) => at >= from).length
  t.ok(seq > 50, `the rogue asked ${seq} times in 3 s (every 10 ms, as a loaded machine allows)`)
  // Once a second: at the first ask, then one second, two and three seconds later (an ask still in flight).
  t.ok(answered >= 2 && answered <= 4, `the victim sent its record ${answered} times in those 3 s`)
  // And it still serves: a good pulse after the loop is taken, and its API shows it.
  await rogue.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode(beaconMessage(sampleBeacon({ name: 'rogue', startedAt, seq: ++seq, cpuPct: 42.5 }))))
  const listed = async () => { const n = (await nodes(victim)).find((n) => n.name === 'rogue'); return { state: n?.state, cpuPct: n?.health?.cpuPct } }
  t.same(await eventually(listed, { state: 'alive', cpuPct: 42.5 }), { state: 'alive', cpuPct: 42.5 }, 'the pulse after the loop is taken')
})
