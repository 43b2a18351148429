/**
 * A rogue peer as a process of its own, so it can run inside a testbed host's namespace: it joins the mesh at
 * TARGET (a multiaddr ending in /p2p/<id>) with the mesh's swarm key, waits until the target listens to TOPIC,
 * publishes each JSON message given, and exits.
 *
 *   node test/helpers/rogue-publisher.ts SWARM_KEY_FILE TARGET TOPIC JSON...
 */
import { multiaddr } from '@multiformats/multiaddr'
import { readSwarmKey } from '../../identity/keys.ts'
import { waitFor } from '../../scripts/agents.ts'
import { bareNode } from './bare-node.ts'

const [keyFile, target, topic, ...messages] = process.argv.slice(2)
if (keyFile == null || target == null || topic == null) throw new Error('usage: rogue-publisher.ts SWARM_KEY_FILE TARGET TOPIC JSON...')
const node = await bareNode(readSwarmKey(keyFile))
const targetId = multiaddr(target).getComponents().find((c) => c.name === 'p2p')?.value
await node.dial(multiaddr(target))
node.services.pubsub.subscribe(topic)
await waitFor(`the target to listen to ${topic}`, () => node.services.pubsub.getSubscribers(topic).some((p) => p.toString() === targetId), 10_000)
for (const message of messages) await node.services.pubsub.publish(topic, new TextEncoder().encode(message))
await new Promise((resolve) => setTimeout(resolve, 500))
await node.stop()
process.stdout.write(`published ${messages.length}\n`)
