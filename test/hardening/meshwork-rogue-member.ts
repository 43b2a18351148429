import { multiaddr } from '@multiformats/multiaddr'
import { readSwarmKey } from '../../identity/keys.ts'
import { decisionCodec } from '../../protocols/decisions.ts'
import type { DecisionMessage, DecisionResult } from '../../protocols/decisions.ts'
import { systemEventCodec } from '../../protocols/events.ts'
import { beaconMessage, beaconOf, healthCodec } from '../../protocols/health.ts'
import type { HealthRecord } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { bareNode } from '../helpers/bare-node.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { bootstrapAddr, waitFor } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'

/**
 * A member that holds the swarm key and misbehaves: a bare libp2p node that sends beacons of its own making
 * (every 300 ms, as a live member), decisions and results, and records what it hears.
 */
export async function rogueMember (swarmKeyFile: string, entries: AgentProcess[], beacon: Partial<HealthBeacon>) {
  const node = await bareNode(readSwarmKey(swarmKeyFile))
  const startedAt = Date.now()
  let seq = 0
  let fields = beacon
  const heard: { beacons: HealthBeacon[], results: DecisionResult[] } = { beacons: [], results: [] }
  const records = new Map<string, HealthRecord>()
  node.services.pubsub.addEventListener('message', (event) => {
    const { topic, data } = event.detail
    if (topic === TOPICS.nodeHealth) {
      // Pulses, rebuilt with the sender's last record as a member does.
      const decoded = healthCodec.decode(data)
      const from = event.detail.type === 'signed' ? event.detail.from.toString() : ''
      if (decoded.ok && decoded.value.record !== undefined) records.set(from, decoded.value.record)
      const record = records.get(from)
      if (decoded.ok && record !== undefined) heard.beacons.push(beaconOf(decoded.value, record))
    } else if (topic === TOPICS.optimizationDecisions) {
      const decoded = decisionCodec.decode(data)
      if (decoded.ok && decoded.value.type === 'result') heard.results.push(decoded.value)
    }
  })
  for (const topic of [TOPICS.nodeHealth, TOPICS.optimizationDecisions, TOPICS.systemEvents]) node.services.pubsub.subscribe(topic)
  for (const entry of entries) await node.dial(multiaddr(await bootstrapAddr(entry)))
  await waitFor('the agents to listen to beacons and decisions', () => [TOPICS.nodeHealth, TOPICS.optimizationDecisions]
    .every((topic) => entries.every((entry) => node.services.pubsub.getSubscribers(topic).some((p) => p.toString() === entry.peerId))))
  const publishBeacon = async () => {
    await node.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode(beaconMessage(sampleBeacon({ name: 'rogue', startedAt, seq: ++seq, ...fields }))))
  }
  await publishBeacon()
  const timer = setInterval(() => { publishBeacon().catch(() => {}) }, 300)
  return {
    node,
    peerId: node.peerId.toString(),
    heard,
    setBeacon (next: Partial<HealthBeacon>) { fields = next },
    async decide (message: DecisionMessage) { await node.services.pubsub.publish(TOPICS.optimizationDecisions, decisionCodec.encode(message)) },
    async leave () {
      clearInterval(timer)
      await node.services.pubsub.publish(TOPICS.systemEvents, systemEventCodec.encode({ v: 1, type: 'member.leave', at: Date.now(), startedAt }))
    },
    async stop () {
      clearInterval(timer)
      await node.stop()
    }
  }
}

