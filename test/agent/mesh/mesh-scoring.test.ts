import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import t from 'tap'
import { loadConfig } from '../../../agent/config/config.ts'
import { createLogger } from '../../../common/logger.ts'
import { Mesh } from '../../../agent/mesh/mesh.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { readSwarmKey } from '../../../identity/keys.ts'
import { beaconMessage, healthCodec } from '../../../protocols/health.ts'
import { TOPICS } from '../../../protocols/topics.ts'
import { tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { bareNode } from '../../helpers/bare-node.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

// Gossipsub's IP-colocation penalty graylists peers once more than 10 share an IP: 15 peers on one host were all
// silenced. The mesh turns that penalty off; this fails if it ever comes back.
t.test('fifteen peers behind one IP get in at once, and are all heard', async (t) => {
  const dir = tempDir(t)
  const swarmKey = readSwarmKey(writeSwarmKey(join(dir, 'swarm.key')))
  const config = loadConfig({ env: {}, flags: { 'data-dir': dir, 'no-mdns': true, listen: ['/ip4/127.0.0.1/tcp/0'] } })
  const mesh = await Mesh.create({ config, privateKey: await generateKeyPair('Ed25519'), swarmKey, metrics: new MetricsStore(), log: createLogger('silent') })
  const heardAfterWarmUp = new Set<string>()
  let warm = false
  mesh.subscribe(healthCodec, (beacon) => { if (warm) heardAfterWarmUp.add(beacon.record?.name ?? '') })
  await mesh.start()
  t.teardown(() => mesh.stop())

  const publishers = await Promise.all(Array.from({ length: 15 }, () => bareNode(swarmKey)))
  t.teardown(() => Promise.all(publishers.map((p) => p.stop())))
  // All at once, as boxes returning from a power cut would: none may be refused.
  await Promise.all(publishers.map(async (p) => {
    p.services.pubsub.subscribe(TOPICS.nodeHealth)
    await p.dial(mesh.node.getMultiaddrs()[0] as never)
  }))
  await waitFor('every publisher to see the mesh subscribed', () => publishers.every((p) =>
    p.services.pubsub.getSubscribers(TOPICS.nodeHealth).some((id) => id.equals(mesh.peerId))))
  // Scores are recomputed on the heartbeat (1 s): give the penalty, were it on, time to bite.
  await new Promise((resolve) => setTimeout(resolve, 2_500))
  warm = true
  let seq = 0
  await waitFor('a beacon from every publisher', async () => {
    seq++
    await Promise.all(publishers.map((p, i) => p.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode(beaconMessage(sampleBeacon({ name: `pub-${i}`, seq }))))))
    return heardAfterWarmUp.size === publishers.length
  }, 10_000, 250)
  t.equal(heardAfterWarmUp.size, 15)
})
