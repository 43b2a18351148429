import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { apiText } from '../../agent/cli/client.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { bootstrapAddr, nodes, status, waitFor } from '../helpers/agents.ts'
import { agentAndMember } from '../helpers/bare-node.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { sendRaw, signedMessage } from '../helpers/gossip-message.ts'

// A member holding the swarm key sends messages on topics the agent never reads. Gossipsub labels its metrics
// with the topic it was given, so each made-up topic used to become a series of its own in the agent's memory
// (and a line of every /metrics scrape), without bound. The agent must drop them before they are counted.

t.test('messages on made-up topics cost the agent nothing it keeps; a good beacon after them is still taken', async (t) => {
  const { agent: victim, member: rogue } = await agentAndMember(t, { name: 'victim' })
  await rogue.dial(multiaddr(await bootstrapAddr(victim)))
  await waitFor('the victim to listen to beacons', () => rogue.services.pubsub.getSubscribers(TOPICS.nodeHealth).some((p) => p.toString() === victim.peerId))

  const key = await generateKeyPair('Ed25519')
  const TOPIC_COUNT = 300
  let sent = 0
  for (let i = 0; i < TOPIC_COUNT; i++) {
    if (await sendRaw(rogue.services.pubsub, victim.peerId, await signedMessage(key, `rogue/${i}`, new Uint8Array([1, 2, 3]), BigInt(i + 1)))) sent++
  }
  t.equal(sent, TOPIC_COUNT, 'every made-up message went out')

  // Then a good beacon from the same member, on the topic the agent reads: it is still heard.
  const beacon = sampleBeacon({ name: 'after-the-flood', startedAt: 1, seq: 1 })
  t.ok(await sendRaw(rogue.services.pubsub, victim.peerId, await signedMessage(key, TOPICS.nodeHealth, healthCodec.encode(beaconMessage(beacon)), BigInt(TOPIC_COUNT + 1))))
  const heard = await waitFor('the good beacon to be taken', async () => (await nodes(victim)).find((n) => n.name === 'after-the-flood'))
  t.equal(heard.state, 'alive')

  const scrape = await apiText(victim.socketPath, '/metrics')
  t.same(scrape.split('\n').filter((line) => line.includes('rogue/')).slice(0, 3), [], 'no series names a made-up topic')
  t.equal((await status(victim)).name, 'victim', 'the victim is up')
})
