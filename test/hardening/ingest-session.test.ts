import { once } from 'node:events'
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { IConnectPacket, Packet } from 'mqtt-packet'
import t from 'tap'
import { createLogger } from '../../agent/logger.ts'
import { DEFAULT_MAX_PACKET_BYTES, maxPacketBytesFor, MqttSession } from '../../agent/mqtt-session.ts'
import type { InboundMessage } from '../../agent/mqtt-session.ts'
import { waitFor } from '../helpers/agents.ts'

// A broker that ignores the Maximum Packet Size we announce (as a 3.1.1 broker, or a hostile one, would).

const LIMIT = 4_096

interface Connection { socket: net.Socket, connect: IConnectPacket }

/** Accepts MQTT 5 connections, answers CONNECT and SUBSCRIBE, and hands each connection to the test. */
async function rogueBroker (t: { teardown: (fn: () => void) => void }) {
  const connections: Connection[] = []
  const server = net.createServer((socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 })
    parser.on('packet', (packet: Packet) => {
      if (packet.cmd === 'connect') {
        connections.push({ socket, connect: packet })
        socket.write(mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode: 0 }, { protocolVersion: 5 }))
      } else if (packet.cmd === 'subscribe') {
        socket.write(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId, granted: [1] }, { protocolVersion: 5 }))
      }
    })
    socket.on('data', (bytes) => { parser.parse(bytes) })
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { port: (server.address() as net.AddressInfo).port, connections }
}

const publish = (topic: string, payload: Buffer, messageId: number) =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId, retain: false, dup: false }, { protocolVersion: 5 })

async function started (t: { teardown: (fn: () => Promise<void>) => void }, port: number) {
  const session = new MqttSession({
    log: createLogger('silent'),
    options: { url: `mqtt://127.0.0.1:${port}`, clientId: 'ingest-session', keepaliveS: 30, sessionExpiryS: 60, receiveMaximum: 10, subscriptions: [{ topic: 'in/#', qos: 1 }], maxPacketBytes: LIMIT, backoffMinMs: 20, backoffMaxMs: 50 }
  })
  t.teardown(() => session.stop())
  const messages: InboundMessage[] = []
  session.on('message', (m) => { messages.push(m) })
  const connected = once(session, 'connected')
  session.start()
  await connected
  return { session, messages }
}

t.test('the session announces its maximum packet size and drops a broker that sends a larger one, before buffering it', async (t) => {
  const broker = await rogueBroker(t)
  const { session, messages } = await started(t, broker.port)
  t.equal(broker.connections[0]?.connect.properties?.maximumPacketSize, LIMIT, 'CONNECT carries Maximum Packet Size')

  const first = broker.connections[0] as Connection
  first.socket.write(publish('in/ok', Buffer.from('1'), 1))
  // A PUBLISH whose header says 100 MiB: only its start is sent; the session must not wait for the rest.
  const huge = publish('in/huge', Buffer.alloc(64 * 1024, 0x61), 2)
  huge.writeUInt8(0xff, 1); huge.writeUInt8(0xff, 2); huge.writeUInt8(0xff, 3); huge.writeUInt8(0x31, 4) // remaining length ≈ 100 MiB
  // Not once(): it would reject on the reset the session causes.
  const closed = new Promise((resolve) => first.socket.once('close', resolve))
  first.socket.write(huge)
  await closed
  t.equal(session.oversizePackets, 1, 'refused (and counted) once its header was read')
  t.same(messages.map((m) => m.topic), ['in/ok'], 'what came before it was delivered')

  await waitFor('the session to reconnect', () => broker.connections.length === 2 && session.connected, 5_000)
  const second = broker.connections[1] as Connection
  // A larger packet that comes whole in one read is refused too…
  second.socket.write(publish('in/whole', Buffer.alloc(LIMIT, 0x62), 3))
  await waitFor('the refusal', () => session.oversizePackets === 2, 5_000)
  await waitFor('the session to reconnect', () => broker.connections.length === 3 && session.connected, 5_000)
  // …and a good one goes through on the next connection.
  ;(broker.connections[2] as Connection).socket.write(publish('in/after', Buffer.from('2'), 4))
  t.same(await waitFor('the good message', () => messages.length === 2 && messages.map((m) => [m.topic, m.connection]), 5_000), [['in/ok', 1], ['in/after', 3]])
})

t.test('a paused session stays paused across a reconnect', async (t) => {
  const broker = await rogueBroker(t)
  const { session, messages } = await started(t, broker.port)
  session.pause()
  broker.connections[0]?.socket.destroy()
  await waitFor('the session to reconnect', () => broker.connections.length === 2 && session.connected, 5_000)
  ;(broker.connections[1] as Connection).socket.write(publish('in/held', Buffer.from('1'), 1))
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(messages, [], 'nothing is read while paused')
  session.resume()
  t.same(await waitFor('the message', () => messages.length === 1 && messages.map((m) => m.topic), 5_000), ['in/held'])
})

t.test('the packet limit lets every payload ingest accepts through, whatever its topic', async (t) => {
  t.equal(maxPacketBytesFor(1024), 1024 + 0xffff + 4096)
  t.equal(DEFAULT_MAX_PACKET_BYTES, maxPacketBytesFor(65_536))
})

t.test('a client certificate the system refuses costs a retry with backoff, never an exception out of a timer', async (t) => {
  const lines: string[] = []
  const record = (obj: unknown, msg?: string) => { lines.push(`${msg ?? ''} ${JSON.stringify(obj)}`) }
  const log = { ...createLogger('silent'), warn: record, debug: record }
  const session = new MqttSession({
    log,
    options: { url: 'mqtts://127.0.0.1:1', clientId: 'ingest-tls', keepaliveS: 30, sessionExpiryS: 60, receiveMaximum: 10, subscriptions: [], tls: { cert: Buffer.from('not a PEM file'), key: Buffer.from('nor this'), rejectUnauthorized: true }, backoffMinMs: 10, backoffMaxMs: 20 }
  })
  t.teardown(() => session.stop())
  session.start()
  const failures = await waitFor('a few attempts', () => lines.length >= 3 && lines, 5_000)
  t.match(failures[0], /cannot connect to the broker .*no start line/, 'OpenSSL\'s reason, logged')
  t.notOk(session.connected)
})
