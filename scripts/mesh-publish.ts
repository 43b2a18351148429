/**
 * Joins a mesh as a member (with its swarm key) and publishes on one gossip topic, so an operator can check that
 * the mesh's validators refuse what they should, and a test can play a rogue member:
 *
 *   node scripts/mesh-publish.ts --swarm-key FILE --to MULTIADDR --topic TOPIC MESSAGE...
 *   node scripts/mesh-publish.ts --swarm-key FILE --to MULTIADDR --beacon '{"name":"x","term":7}'
 *
 * It dials MULTIADDR (ending in /p2p/<peer id>), waits until that peer listens to the topic, publishes each
 * MESSAGE (JSON, encoded with the topic's codec as a member sends it: CBOR for the health topic, its fields
 * named as in HealthWireSchema; with --raw, the bytes as given), stays about a second (--stay MS) so the
 * messages get out, prints `published N` and exits. --beacon publishes one valid health beacon (pulse and
 * record) of a small CPU-only box with the given top-level fields of the beacon (HealthBeacon, as the API shows
 * it) replaced, and again every second while it stays, as a live member would.
 */
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { readSwarmKey } from '../identity/keys.ts'
import { UsageError } from '../common/errors.ts'
import { GOSSIP_CODECS } from '../protocols/gossip-codecs.ts'
import { beaconMessage, healthCodec } from '../protocols/health.ts'
import type { HealthBeacon } from '../protocols/health.ts'
import { escapeText } from '../common/text.ts'
import { waitFor } from './agents.ts'
import { bareNode } from './bare-node.ts'
import { sampleBeacon } from './beacon.ts'

const USAGE = `usage: node scripts/mesh-publish.ts --swarm-key FILE --to MULTIADDR (--topic TOPIC MESSAGE... | --beacon FIELDS)
  --swarm-key FILE   the mesh's swarm key
  --to MULTIADDR     a member to join through, ending in /p2p/<peer id>
  --topic TOPIC      the gossip topic: ${[...GOSSIP_CODECS.keys()].join(', ')}
  MESSAGE            JSON, encoded with the topic's codec (with --raw: sent as given, valid or not)
  --beacon FIELDS    publish a valid health beacon with these top-level fields (a JSON object) replaced
  --stay MS          how long to stay in the mesh after publishing (default 1000)
`

const BEACON_REPEAT_MS = 1_000

export interface PublishPlan {
  psk: Uint8Array
  to: Multiaddr
  targetId: string
  topic: string
  /** Encoded messages, in order; a beacon plan makes them as it goes (fresh `seq`). */
  messages: (() => Uint8Array)[]
  repeat: (() => Uint8Array) | null
  stayMs: number
}

/** Reads the command line into a plan, or throws UsageError saying what is wrong. */
export function planFrom (argv: string[]): PublishPlan {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'swarm-key': { type: 'string' },
        to: { type: 'string' },
        topic: { type: 'string' },
        beacon: { type: 'string' },
        raw: { type: 'boolean' },
        stay: { type: 'string' }
      }
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values['swarm-key'] == null) throw new UsageError('--swarm-key FILE is required')
  if (values.to == null) throw new UsageError('--to MULTIADDR is required')
  let to: Multiaddr
  try {
    to = multiaddr(values.to)
  } catch (err) {
    throw new UsageError(`--to: ${(err as Error).message}`)
  }
  const targetId = to.getComponents().find((c) => c.name === 'p2p')?.value
  if (targetId == null) throw new UsageError('--to must end in /p2p/<peer id>')
  const stayMs = values.stay == null ? 1_000 : Number(values.stay)
  if (!Number.isInteger(stayMs) || stayMs < 0) throw new UsageError('--stay must be a whole number of milliseconds')
  let psk: Uint8Array
  try {
    psk = readSwarmKey(values['swarm-key'])
  } catch (err) {
    throw new UsageError(`--swarm-key: ${(err as Error).message}`)
  }

  if (values.beacon != null) {
    if (positionals.length > 0 || values.raw === true) throw new UsageError('--beacon takes no MESSAGE and no --raw')
    if (values.topic != null && values.topic !== healthCodec.topic) throw new UsageError(`--beacon publishes on ${healthCodec.topic}, not ${values.topic}`)
    const fields = parseJson('--beacon', values.beacon)
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) throw new UsageError('--beacon must be a JSON object')
    const startedAt = Date.now()
    let seq = 0
    const beacon = () => healthCodec.encode(beaconMessage(sampleBeacon({ name: 'mesh-publish', startedAt, ...fields as Partial<HealthBeacon>, seq: ++seq })))
    return { psk, to, targetId, topic: healthCodec.topic, messages: [beacon], repeat: beacon, stayMs }
  }

  if (values.topic == null) throw new UsageError('--topic TOPIC (or --beacon FIELDS) is required')
  const codec = GOSSIP_CODECS.get(values.topic)
  if (codec == null) throw new UsageError(`--topic: unknown topic ${values.topic} (one of ${[...GOSSIP_CODECS.keys()].join(', ')})`)
  if (positionals.length === 0) throw new UsageError('no MESSAGE to publish')
  const text = new TextEncoder()
  const messages = positionals.map((message, i) => {
    if (values.raw === true) return text.encode(message)
    const encoded = codec.encode(parseJson(`MESSAGE ${i + 1}`, message))
    // Sent all the same (checking the mesh's validators is the point), but said: the mesh should refuse it.
    const check = codec.decode(encoded)
    if (!check.ok) process.stderr.write(`note: MESSAGE ${i + 1} should be refused (${check.reason}: ${escapeText(check.detail)})\n`)
    return encoded
  })
  return { psk, to, targetId, topic: codec.topic, messages: messages.map((m) => () => m), repeat: null, stayMs }
}

function parseJson (what: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new UsageError(`${what} is not JSON: ${(err as Error).message}`)
  }
}

/** Joins, waits until the target listens to the topic, publishes, stays; returns how many were published. */
export async function publish (plan: PublishPlan): Promise<number> {
  const node = await bareNode(plan.psk)
  try {
    await node.dial(plan.to)
    const pubsub = node.services.pubsub
    pubsub.subscribe(plan.topic)
    await waitFor(`${plan.targetId} to listen to ${plan.topic}`, () => pubsub.getSubscribers(plan.topic).some((p) => p.toString() === plan.targetId), 10_000)
    let published = 0
    for (const message of plan.messages) {
      await pubsub.publish(plan.topic, message())
      published++
    }
    const until = Date.now() + plan.stayMs
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(BEACON_REPEAT_MS, until - Date.now())))
      if (plan.repeat != null && Date.now() < until) await pubsub.publish(plan.topic, plan.repeat())
    }
    return published
  } finally {
    await node.stop()
  }
}

if (import.meta.main) {
  try {
    const plan = planFrom(process.argv.slice(2))
    process.stdout.write(`published ${await publish(plan)}\n`)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`mesh-publish: ${err.message}\n${USAGE}`)
      process.exitCode = 2
    } else {
      process.stderr.write(`mesh-publish: ${(err as Error).message}\n`)
      process.exitCode = 1
    }
  }
}
