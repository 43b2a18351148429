import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { readSwarmKey } from '../../identity/keys.ts'
import { encode as encodeCbor } from 'cborg'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { bareNode } from '../helpers/bare-node.ts'
import { sampleBeacon } from '../helpers/beacon.ts'
import { bootstrapAddr, gossip, stopAgents, nodes, startAgent, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'

const beacon = (overrides: Partial<HealthBeacon> = {}): HealthBeacon => sampleBeacon({ name: 'rogue', startedAt: Date.now(), ...overrides })

t.test('malformed, oversized, unknown-version, invalid and unsigned gossip is refused and counted', async (t) => {
  const root = tempDir(t)
  const swarmKey = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'target', swarmKeyFile: swarmKey })
  t.teardown(() => stopAgents([agent]))
  const entry = multiaddr(await bootstrapAddr(agent))

  const psk = readSwarmKey(swarmKey)
  const signed = await bareNode(psk, 'StrictSign')
  const unsigned = await bareNode(psk, 'StrictNoSign')
  t.teardown(async () => { await signed.stop(); await unsigned.stop() })
  for (const node of [signed, unsigned]) {
    await node.dial(entry)
    await waitFor('the agent to be a subscriber of the health topic',
      () => node.services.pubsub.getSubscribers(TOPICS.nodeHealth).some((p) => p.toString() === agent.peerId))
  }

  const good = healthCodec.encode(beaconMessage(beacon()))
  const wire = beaconMessage(beacon())
  const bad: Array<[string, Uint8Array]> = [
    ['malformed', good.subarray(0, good.byteLength - 5)],
    ['malformed', new TextEncoder().encode(JSON.stringify(beacon()))],
    ['malformed', encodeCbor({ v: 2, seq: 1 })],
    // Arrays nested 15 000 deep (within the size cap) overflow the CBOR decoder's stack; a tag it does not know.
    ['malformed', Uint8Array.from({ length: 15_000 }, (_, i) => i < 14_999 ? 0x81 : 0x02)],
    ['malformed', Uint8Array.from([0x82, 0xc1, 0x02, 0x00])],
    ['oversized', healthCodec.encode(beaconMessage(beacon({ name: 'x'.repeat(17_000) })))],
    ['unknown-version', healthCodec.encode({ ...wire, v: 1 as 2 })],
    ['invalid', healthCodec.encode({ ...wire, cpuPm: 2500 })],
    // Version 2, then a 64-bit integer where startedAt goes: CBOR hands it over as a bigint.
    ['invalid', Uint8Array.from([0x82, 0x02, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
    ['invalid', healthCodec.encode({ ...wire, record: { ...wire.record, memTotalBytes: 'lots' } } as never)]
  ]
  for (const [, data] of bad) await signed.services.pubsub.publish(TOPICS.nodeHealth, data)
  await unsigned.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode(beaconMessage(beacon({ name: 'unsigned' }))))

  const expected = { malformed: 5, oversized: 1, 'unknown-version': 1, invalid: 3 }
  // gossipsub's own refusals (the unsigned beacon: no signature) are counted as `envelope/<error>`.
  const counted = async () => {
    const { rejected } = await gossip(agent)
    const ours = Object.fromEntries(Object.keys(expected).map((reason) => [reason, rejected[`${reason}/${TOPICS.nodeHealth}`]]))
    return { ...ours, envelope: Object.keys(rejected).some((k) => k.startsWith('envelope/')) }
  }
  t.same(await eventually(counted, { ...expected, envelope: true }), { ...expected, envelope: true }, 'every bad message is counted, by reason')
  t.same((await nodes(agent)).map((n) => n.name), ['target'], 'no refused message reached the membership table')

  // The same channel with a good beacon does get through: the refusals above were the validator's doing.
  await signed.services.pubsub.publish(TOPICS.nodeHealth, healthCodec.encode(beaconMessage(beacon())))
  const members = async () => (await nodes(agent)).map((n) => n.name).sort()
  t.same(await eventually(members, ['rogue', 'target']), ['rogue', 'target'], 'a valid signed beacon from the same peer is accepted')
})
