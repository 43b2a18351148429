import { EventEmitter, once } from 'node:events'
import net from 'node:net'
import { join } from 'node:path'
import mqttPacket from 'mqtt-packet'
import type { Packet } from 'mqtt-packet'
import t from 'tap'
import { apiGet } from '../../agent/cli/client.ts'
import { Ingest } from '../../agent/ingest/ingest.ts'
import { createLogger } from '../../common/logger.ts'
import type { MqttSession } from '../../agent/ingest/mqtt-session.ts'
import { HOUR_MS, SensorStore } from '../../agent/ingest/sensor-store.ts'
import { Store } from '../../agent/store/store.ts'
import { PayloadParser } from '../../protocols/sensor-payload.ts'
import type { DeadLetterView } from '../../agent/ingest/sensor-store.ts'
import { ingest, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'

/**
 * A hostile broker sends a real agent messages on topics it never subscribed to, and oversize messages with
 * 10 KB topics: the first go to the dead letter as bad-topic (never stored as readings), all are acknowledged,
 * and the log neither carries the long topics nor a line per oversize message.
 */

const V5 = { protocolVersion: 5 } as const
const log = createLogger('silent')

t.test('messages on topics outside mqtt.topics are dead-lettered and acknowledged; long topics are cut in the log', async (t) => {
  const acked: number[] = []
  let agentSocket: net.Socket | undefined
  const server = net.createServer((socket) => {
    const parser = mqttPacket.parser(V5)
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') socket.write(mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode: 0 }, V5))
      else if (packet.cmd === 'subscribe') {
        socket.write(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId, granted: packet.subscriptions.map(() => 1) }, V5))
        agentSocket = socket
      } else if (packet.cmd === 'puback') acked.push(packet.messageId as number)
    })
    socket.on('data', (bytes) => { parser.parse(bytes) })
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  const port = (server.address() as net.AddressInfo).port
  const root = tempDir(t)
  const agent = await startAgent({
    root,
    name: 'ingest-topics',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    logLevel: 'info',
    config: { mqtt: { url: `mqtt://127.0.0.1:${port}`, topics: ['in/#'], maxPayloadBytes: 1024 } }
  })
  t.teardown(() => stopAgents([agent]))
  const socket = await waitFor('the agent to subscribe', () => agentSocket, 10_000)
  const publish = (topic: string, payload: Buffer, messageId: number) =>
    socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false, dup: false }, V5))
  const longTopic = `in/${'x'.repeat(10_000)}`
  publish('elsewhere/kitchen', Buffer.from('99'), 1)
  publish('$share/in/x', Buffer.from('98'), 2)
  // Over the agent's packet limit (1 KiB payloads + 68 KiB): dropped unread, three times.
  for (const id of [3, 4, 5]) publish(longTopic, Buffer.alloc(80_000, 0x61), id)
  publish('in/good', Buffer.from('7'), 6)
  t.same(await waitFor('every message acknowledged', () => acked.length === 6 && acked, 10_000), [1, 2, 3, 4, 5, 6])
  t.same((await sensors(agent)).map((s) => [s.sensor, s.value]), [['in/good', 7]], 'only the subscribed topic gave a reading')
  const letters = await apiGet<DeadLetterView[]>(agent.socketPath, '/api/v1/ingest/dead-letters')
  t.same(letters.map((l) => [l.topic.slice(0, 20), l.reason]).reverse(), [
    ['elsewhere/kitchen', 'bad-topic'], ['$share/in/x', 'bad-topic'],
    [longTopic.slice(0, 20), 'oversize'], [longTopic.slice(0, 20), 'oversize'], [longTopic.slice(0, 20), 'oversize']
  ])
  t.match(letters.at(-1), { detail: 'the topic matches none of mqtt.topics: never subscribed to' })
  const output = agent.output()
  t.equal(output.match(/over our maximum packet size/g)?.length, 1, 'the oversize warning is logged once a minute, not per message')
  t.notMatch(output, 'x'.repeat(201), 'no log line carries the whole topic')
  t.equal((await ingest(agent)).connected, true)
})

t.test('a shared subscription delivers by the filter inside it', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const sensorStore = new SensorStore({ db: store.database, log, retention: { rawMs: HOUR_MS, minuteMs: HOUR_MS, hourMs: HOUR_MS } })
  const session = Object.assign(new EventEmitter(), { connected: true, broker: 'mqtt://x', ack: () => {}, pause: () => {}, resume: () => {} })
  const parser = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 64, topicRules: [], maxClockSkewMs: 600_000 })
  const ingest = new Ingest({ session: session as unknown as MqttSession, store: sensorStore, parser, log, topics: ['$share/group/in/#', 'plain/+'], limits: { maxMessages: 1, maxDelayMs: 1_000 } })
  ingest.start()
  t.teardown(() => { ingest.stop() })
  for (const topic of ['in/a', 'plain/b', 'group/in/a', 'out/c']) session.emit('message', { topic, payload: Buffer.from('1'), qos: 0, messageId: undefined, connection: 1 })
  t.same(sensorStore.sensors().map((s) => s.sensor), ['in/a', 'plain/b'])
  t.same(sensorStore.deadLetters().map((d) => [d.topic, d.reason]), [['out/c', 'bad-topic'], ['group/in/a', 'bad-topic']])
})
