import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import t from 'tap'
import { loadConfig } from '../../../agent/config/config.ts'
import { createLogger } from '../../../common/logger.ts'
import { Mesh } from '../../../agent/mesh/mesh.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { readSwarmKey } from '../../../identity/keys.ts'
import { healthCodec } from '../../../protocols/health.ts'
import { beaconMessage } from '../../../protocols/health.ts'
import type { HealthWire } from '../../../protocols/health.ts'
import { tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const beacon = (seq: number): HealthWire => beaconMessage(sampleBeacon({ name: 'a', seq }))

/** The peers `mesh` forwards a topic to (gossipsub has the method; its exported type does not list it). */
const meshPeers = (mesh: Mesh): string[] =>
  (mesh.node.services.pubsub as unknown as { getMeshPeers: (topic: string) => string[] }).getMeshPeers(healthCodec.topic)

/** Three meshes in a line, a – b – c: a and c are not connected (as when NAT keeps them apart). */
async function line (t: { teardown: (fn: () => unknown) => void }, degree: number) {
  const dir = tempDir(t)
  const swarmKey = readSwarmKey(writeSwarmKey(join(dir, 'swarm.key')))
  const heardByC: number[] = []
  const meshes = await Promise.all(['a', 'b', 'c'].map(async (name) => {
    const config = loadConfig({ env: { NOODLE_GOSSIP_DEGREE: String(degree) }, flags: { 'data-dir': join(dir, name), 'no-mdns': true, listen: ['/ip4/127.0.0.1/tcp/0'] } })
    const mesh = await Mesh.create({ config, privateKey: await generateKeyPair('Ed25519'), swarmKey, metrics: new MetricsStore(), log: createLogger('silent') })
    mesh.subscribe(healthCodec, (b) => { if (name === 'c') heardByC.push(b.seq) })
    await mesh.start()
    return mesh
  }))
  t.teardown(() => Promise.all(meshes.map((m) => m.stop())))
  const [a, b, c] = meshes as [Mesh, Mesh, Mesh]
  await a.node.dial(b.node.getMultiaddrs()[0] as never)
  await c.node.dial(b.node.getMultiaddrs()[0] as never)
  await waitFor('b to know both subscribe', () => b.node.services.pubsub.getSubscribers(healthCodec.topic).length === 2)
  return { a, b, c, heardByC }
}

t.test('degree 0: a member that cannot be reached directly still gets every message, through gossip repair', async (t) => {
  const { a, b, heardByC } = await line(t, 0)
  await a.publish(healthCodec, beacon(1))
  t.same(await eventually(() => [...heardByC], [1], { timeoutMs: 5_000 }), [1],
    'c hears a\'s beacon through b: delivered by repair (announce, then pull) on b\'s heartbeat')
  t.same(meshPeers(b), [], 'b forwards to nobody: there is no mesh')
})

t.test('degree 1: messages are forwarded through the mesh', async (t) => {
  const { a, b, c, heardByC } = await line(t, 1)
  const both = [a.peerId.toString(), c.peerId.toString()].sort()
  t.same(await eventually(() => meshPeers(b).sort(), both, { timeoutMs: 5_000 }), both, 'b takes a and c into its mesh')
  // The mesh forms on the heartbeat; keep publishing until the forwarded copy lands.
  let seq = 0
  const heard = await eventually(async () => {
    await a.publish(healthCodec, beacon(++seq))
    return heardByC.length > 0
  }, true, { timeoutMs: 5_000, intervalMs: 200 })
  t.equal(heard, true, 'c hears a\'s beacon: forwarded through b\'s mesh')
})
