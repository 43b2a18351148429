import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import t from 'tap'
import { loadConfig } from '../../../agent/config/config.ts'
import { createLogger } from '../../../common/logger.ts'
import { Mesh } from '../../../agent/mesh/mesh.ts'
import { MetricsStore } from '../../../agent/metrics/metrics.ts'
import { readSwarmKey } from '../../../identity/keys.ts'
import type { MessageCodec } from '../../../protocols/codec.ts'
import { systemEventCodec } from '../../../protocols/events.ts'
import type { SystemEvent } from '../../../protocols/events.ts'
import { healthCodec } from '../../../protocols/health.ts'
import { beaconMessage } from '../../../protocols/health.ts'
import type { HealthWire } from '../../../protocols/health.ts'
import { REJECTED_METRIC } from '../../../protocols/validator.ts'
import { tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import { sendRaw, signedMessage } from '../../helpers/gossip-message.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

type Test = { teardown: (fn: () => unknown) => void }

/** Two connected in-process meshes, and b's metrics; `listen` subscribes on b before it starts. */
async function pair (t: Test, listen: (b: Mesh) => void = () => {}): Promise<{ a: Mesh, b: Mesh, bMetrics: MetricsStore }> {
  const dir = tempDir(t)
  const swarmKey = readSwarmKey(writeSwarmKey(join(dir, 'swarm.key')))
  const bMetrics = new MetricsStore()
  const [a, b] = await Promise.all(['a', 'b'].map(async (name) => {
    const config = loadConfig({ env: {}, flags: { 'data-dir': join(dir, name), 'no-mdns': true, listen: ['/ip4/127.0.0.1/tcp/0'] } })
    const metrics = name === 'b' ? bMetrics : new MetricsStore()
    return await Mesh.create({ config, privateKey: await generateKeyPair('Ed25519'), swarmKey, metrics, log: createLogger('silent') })
  })) as [Mesh, Mesh]
  listen(b)
  await a.start()
  await b.start()
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  await a.node.dial(b.node.getMultiaddrs()[0] as never)
  return { a, b, bMetrics }
}

/** Whether `publisher` knows that `listener` reads `topic` (only then does a publication reach it). */
const reads = (publisher: Mesh, listener: Mesh, topic: string): boolean =>
  publisher.node.services.pubsub.getSubscribers(topic).some((p) => p.equals(listener.peerId))

/** The next value `mesh` hands a new handler of `codec`'s topic, and the handler (to unsubscribe it). */
function next<T> (mesh: Mesh, codec: MessageCodec<T>): { value: Promise<{ value: T, from: PeerId }>, handler: (value: T, from: PeerId) => void } {
  let handler: (value: T, from: PeerId) => void = () => {}
  const value = new Promise<{ value: T, from: PeerId }>((resolve) => { handler = (v, from) => { resolve({ value: v, from }) } })
  mesh.subscribe(codec, handler)
  return { value, handler }
}

/** Resolves with `promise`, or with 'nothing' if it has not settled within `ms`. */
const within = async <T>(promise: Promise<T>, ms: number): Promise<T | 'nothing'> =>
  await Promise.race([promise, new Promise<'nothing'>((resolve) => setTimeout(() => { resolve('nothing') }, ms))])

const beacon = (seq: number): HealthWire => beaconMessage(sampleBeacon({ name: 'a', seq }))

t.test('every handler of a topic gets the message, decoded once; a failing handler does not stop the others', async (t) => {
  const heard: Array<{ handler: string, value: HealthWire }> = []
  const { a, b } = await pair(t, (b) => {
    b.subscribe(healthCodec, (value) => { heard.push({ handler: 'first', value }) })
    b.subscribe(healthCodec, () => { throw new Error('a handler bug') })
    b.subscribe(healthCodec, (value) => { heard.push({ handler: 'second', value }) })
  })
  await waitFor('a to know b reads beacons', () => reads(a, b, healthCodec.topic), 5_000, 20)
  await a.publish(healthCodec, beacon(7))
  const handlers = await waitFor('both handlers to be called', () => heard.length === 2 && heard.map((h) => h.handler), 5_000, 20)
  t.same(handlers, ['first', 'second'], 'in the order they subscribed, past the one that threw')
  t.match(heard[0]?.value, { record: { name: 'a' }, seq: 7 })
  t.equal(heard[0]?.value, heard[1]?.value, 'the very same decoded value: the bytes were parsed once')
})

t.test('a topic first read after start is subscribed then, and unsubscribing its last handler ends it', async (t) => {
  const { a, b } = await pair(t)
  t.notOk(reads(a, b, systemEventCodec.topic), 'b reads no events yet')
  const first = next(b, systemEventCodec)
  const second = next(b, systemEventCodec)
  await waitFor('a to know b reads events now', () => reads(a, b, systemEventCodec.topic), 5_000, 20)
  const leave: SystemEvent = { v: 1, type: 'member.leave', at: 1_000, startedAt: 500 }
  await a.publish(systemEventCodec, leave)
  const [one, two] = await Promise.all([first.value, second.value].map(async (p) => await within(p, 5_000)))
  t.match(one, { value: leave }, 'the first handler got the event')
  t.match(two, { value: leave }, 'so did the second')
  t.equal(one !== 'nothing' && one?.from.toString(), a.peerId.toString(), 'from its signer')

  // One handler gone: the topic is still read, and the other handler still hears.
  b.unsubscribe(systemEventCodec, first.handler)
  const third = next(b, systemEventCodec)
  const registered: SystemEvent = { v: 1, type: 'operator.registered', at: 2_000, userId: '6f1c2a3e-8d4b-4c5a-9e7f-0a1b2c3d4e5f', username: 'ada' }
  await a.publish(systemEventCodec, registered)
  t.same(await within(third.value.then((r) => r.value), 5_000), registered, 'a handler added later still hears')
  t.equal(b.node.services.pubsub.getTopics().includes(systemEventCodec.topic), true, 'the topic is still subscribed')

  b.unsubscribe(systemEventCodec, second.handler)
  b.unsubscribe(systemEventCodec, third.handler)
  t.same(b.node.services.pubsub.getTopics().includes(systemEventCodec.topic), false, 'with no handler left, the topic is dropped')
  t.equal(b.node.services.pubsub.topicValidators.has(systemEventCodec.topic), true, 'but its validator stays')
  await waitFor('a to know b no longer reads events', () => !reads(a, b, systemEventCodec.topic), 5_000, 20)
  b.unsubscribe(systemEventCodec, second.handler) // a second time: nothing to undo
  t.equal(b.node.services.pubsub.getTopics().includes(systemEventCodec.topic), false)

  // Read again: subscribed again, while running.
  const again = next(b, systemEventCodec)
  await waitFor('a to know b reads events again', () => reads(a, b, systemEventCodec.topic), 5_000, 20)
  await a.publish(systemEventCodec, leave)
  t.same(await within(again.value.then((r) => r.value), 5_000), leave, 'heard after subscribing again')
})

t.test('a handler unsubscribed before start: its topic is never read', async (t) => {
  const { a, b } = await pair(t, (b) => {
    const handler = (): void => {}
    b.subscribe(healthCodec, handler)
    b.unsubscribe(healthCodec, handler)
  })
  t.same(b.node.services.pubsub.getTopics(), [], 'b subscribed to nothing when it started')
  t.equal(b.node.services.pubsub.topicValidators.has(healthCodec.topic), true, 'though it validates the topic')
  t.equal(reads(a, b, healthCodec.topic), false)
})

t.test('a reader reads its topic from its start to its stop', async (t) => {
  const heard: HealthWire[] = []
  let reader: ReturnType<Mesh['reader']> | undefined
  const { a, b } = await pair(t, (b) => { reader = b.reader(healthCodec, (value) => { heard.push(value) }) })
  t.same(b.node.services.pubsub.getTopics(), [], 'made, it reads nothing')
  await reader?.start?.()
  await waitFor('a to know b reads beacons', () => reads(a, b, healthCodec.topic), 5_000, 20)
  await a.publish(healthCodec, beacon(3))
  t.match(await waitFor('the beacon', () => heard[0], 5_000, 20), { record: { name: 'a' }, seq: 3 })
  await reader?.stop?.()
  t.same(b.node.services.pubsub.getTopics(), [], 'stopped, it reads nothing again')
})

t.test('a topic nobody here reads, before its first reader and after its last, is still validated: what does not decode is refused and counted', async (t) => {
  const { a, b, bMetrics } = await pair(t)
  const rogue = await generateKeyPair('Ed25519')
  const topic = systemEventCodec.topic
  const rejected = () => bMetrics.series(REJECTED_METRIC)
  const sendBad = async (seq: bigint) => await sendRaw(a.node.services.pubsub, b.peerId.toString(), await signedMessage(rogue, topic, new TextEncoder().encode('{"v":1,'), seq))
  t.same(b.node.services.pubsub.getTopics(), [], 'b reads nothing')
  await waitFor('a gossipsub stream to b', () => a.node.services.pubsub.getPeers().some((p) => p.equals(b.peerId)), 5_000, 20)

  t.equal(await sendBad(1n), true, 'sent before any reader')
  t.same(await eventually(rejected, { [`malformed/${topic}`]: 1 }), { [`malformed/${topic}`]: 1 }, 'refused and counted')

  const { handler } = next(b, systemEventCodec)
  b.unsubscribe(systemEventCodec, handler)
  t.equal(await sendBad(2n), true, 'sent after the last reader left')
  t.same(await eventually(rejected, { [`malformed/${topic}`]: 2 }), { [`malformed/${topic}`]: 2 }, 'refused and counted again')
})

t.test('a topic read with a codec other than its own throws TopicCodecError; its own codec is still taken', async (t) => {
  const { b } = await pair(t)
  const impostor: MessageCodec<SystemEvent> = { ...systemEventCodec }
  t.throws(() => { b.subscribe(impostor, () => {}) }, { name: 'TopicCodecError', code: 'ERR_TOPIC_CODEC' }, 'before any reader: the topic has its codec from the start')
  b.subscribe(systemEventCodec, () => {})
  t.throws(() => { b.subscribe(impostor, () => {}) }, { code: 'ERR_TOPIC_CODEC' }, 'beside a reader of the topic')
  t.same(b.node.services.pubsub.getTopics(), [systemEventCodec.topic], 'only the rightful reader subscribed')
})
