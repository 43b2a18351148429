import { once } from 'node:events'
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { IConnectPacket, Packet } from 'mqtt-packet'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { DEFAULT_MAX_PACKET_BYTES, maxPacketBytesFor, MqttSession, PacketFramer, REDELIVERED_METRIC } from '../../agent/ingest/mqtt-session.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'
import type { InboundMessage } from '../../agent/ingest/mqtt-session.ts'
import { waitFor } from '../helpers/agents.ts'

// A broker that ignores the Maximum Packet Size we announce (as a 3.1.1 broker must, or a hostile one would).

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

const publish = (topic: string, payload: Buffer, messageId: number, { qos = 1, dup = false }: { qos?: 0 | 1, dup?: boolean } = {}) =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos, messageId, retain: false, dup }, { protocolVersion: 5 })

async function started (t: { teardown: (fn: () => Promise<void>) => void }, port: number, metrics = new MetricsStore()) {
  const session = new MqttSession({
    log: createLogger('silent'),
    metrics,
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

t.test('the session announces its maximum packet size; a larger message is handed on without its payload, unbuffered', async (t) => {
  const broker = await rogueBroker(t)
  const { session, messages } = await started(t, broker.port)
  t.equal(broker.connections[0]?.connect.properties?.maximumPacketSize, LIMIT, 'CONNECT carries Maximum Packet Size')

  const first = broker.connections[0] as Connection
  first.socket.write(publish('in/ok', Buffer.from('1'), 1))
  // 8 MiB, written 64 KiB at a time: the session must drop it as it streams past.
  const huge = publish('in/huge', Buffer.alloc(8 * 1024 * 1024, 0x61), 2)
  for (let at = 0; at < huge.length; at += 65_536) first.socket.write(huge.subarray(at, at + 65_536))
  const whole = publish('in/whole', Buffer.alloc(LIMIT, 0x62), 3) // over the limit by its header, in one read
  first.socket.write(whole)
  first.socket.write(publish('in/after', Buffer.from('2'), 4))
  const got = await waitFor('four messages', () => messages.length === 4 && messages, 10_000)
  t.same(got.map((m) => [m.topic, m.messageId, m.payload.length, m.oversize]), [
    ['in/ok', 1, 1, undefined],
    ['in/huge', 2, 0, huge.length],
    ['in/whole', 3, 0, whole.length],
    ['in/after', 4, 1, undefined]
  ], 'in order, the oversize ones with their size and ids (to be dead-lettered and acknowledged)')
  t.equal(session.oversizePackets, 2, 'counted')
  t.equal(broker.connections.length, 1, 'the connection stays up')

  // Any other packet over the limit closes the connection; the session reconnects.
  const closed = new Promise((resolve) => first.socket.once('close', resolve))
  first.socket.write(Buffer.concat([Buffer.from([0x90, 0xff, 0xff, 0x7f]), Buffer.alloc(1024)])) // a 2 MiB SUBACK
  await closed
  t.equal(session.oversizePackets, 3)
  await waitFor('the session to reconnect', () => broker.connections.length === 2 && session.connected, 5_000)
  ;(broker.connections[1] as Connection).socket.write(publish('in/again', Buffer.from('3'), 5))
  t.same(await waitFor('the next message', () => messages.length === 5 && messages.at(-1)?.connection, 5_000), 2)
})

t.test('QoS 1 messages the broker sends again (DUP) are counted: each may be a duplicate row', async (t) => {
  const broker = await rogueBroker(t)
  const metrics = new MetricsStore()
  const { messages } = await started(t, broker.port, metrics)
  const socket = (broker.connections[0] as Connection).socket
  socket.write(publish('in/first', Buffer.from('1'), 1))
  socket.write(publish('in/again', Buffer.from('1'), 1, { dup: true }))
  // DUP must be 0 at QoS 0 (MQTT 5 §3.3.1.1): a broker that sets it anyway has sent nothing again.
  socket.write(publish('in/qos0', Buffer.from('2'), 0, { qos: 0, dup: true }))
  t.same(await waitFor('three messages', () => messages.length === 3 && messages.map((m) => m.topic), 5_000), ['in/first', 'in/again', 'in/qos0'],
    'each is handed on, the redelivered one too')
  t.equal(metrics.get(REDELIVERED_METRIC), 1, 'one redelivery counted')
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
    metrics: new MetricsStore(),
    options: { url: 'mqtts://127.0.0.1:1', clientId: 'ingest-tls', keepaliveS: 30, sessionExpiryS: 60, receiveMaximum: 10, subscriptions: [], tls: { cert: Buffer.from('not a PEM file'), key: Buffer.from('nor this'), rejectUnauthorized: true }, backoffMinMs: 10, backoffMaxMs: 20 }
  })
  t.teardown(() => session.stop())
  session.start()
  const failures = await waitFor('a few attempts', () => lines.length >= 3 && lines, 5_000)
  t.match(failures[0], /cannot connect to the broker .*no start line/, 'OpenSSL\'s reason, logged')
  t.notOk(session.connected)
})

/** Feeds `bytes` to a framer in the given pieces and parses what it hands on; returns what came out. */
function frame (pieces: Buffer[], limit = LIMIT) {
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  const out: string[] = []
  let handedOn = 0
  parser.on('packet', (p: Packet) => { out.push(p.cmd === 'publish' ? `publish ${p.topic} ${p.messageId} ${p.payload.length}` : p.cmd) })
  parser.on('error', (err: Error) => { out.push(`error ${err.message}`) })
  const framer = new PacketFramer(limit, {
    packets: (b) => { handedOn += b.length; parser.parse(b) },
    oversizePublish: (p) => { out.push(`oversize ${p.topic} ${p.messageId} ${p.size} qos${p.qos}`) }
  })
  const ok = pieces.every((piece) => framer.push(piece))
  return { ok, out, handedOn }
}

t.test('the framer hands on the same packets however the stream is cut, and never the oversize one', async (t) => {
  const qos0 = mqttPacket.generate({ cmd: 'publish', topic: 'q0', payload: Buffer.alloc(LIMIT, 1), qos: 0, retain: false, dup: false }, { protocolVersion: 5 })
  const stream = Buffer.concat([
    publish('a', Buffer.from('1'), 1),
    mqttPacket.generate({ cmd: 'pingresp' }, { protocolVersion: 5 }),
    publish('big', Buffer.alloc(3 * LIMIT, 7), 2),
    qos0,
    publish('b', Buffer.alloc(200, 2), 3) // a 2-byte length
  ])
  const expected = ['publish a 1 1', 'pingresp', `oversize big 2 ${3 * LIMIT + 11} qos1`, `oversize q0 undefined ${qos0.length} qos0`, 'publish b 3 200']
  const small = stream.length - (3 * LIMIT + 11) - qos0.length
  t.same(frame([stream]), { ok: true, out: expected, handedOn: small }, 'in one piece')
  const different: Array<{ cut: number, out: string[], handedOn: number }> = []
  for (let cut = 1; cut < stream.length; cut += 97) {
    const got = frame([stream.subarray(0, cut), stream.subarray(cut)])
    if (got.out.join() !== expected.join() || got.handedOn !== small) different.push({ cut, out: got.out, handedOn: got.handedOn })
  }
  t.same(different, [], 'cut in two at every 97th byte: the same')
  t.same(frame([...stream].map((b) => Buffer.from([b]))), { ok: true, out: expected, handedOn: small }, 'byte by byte')
})

t.test('the framer refuses malformed lengths, oversize packets other than PUBLISH, and a PUBLISH too short for its topic', async (t) => {
  t.same(frame([Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])]).ok, false, 'a length of 5 bytes')
  t.same(frame([Buffer.from([0x90, 0xff, 0x7f])]).ok, false, 'an oversize SUBACK')
  t.same(frame([Buffer.concat([Buffer.from([0x32, 0x80, 0x40, 0xff, 0xff]), Buffer.alloc(8192)])]).ok, false, 'an 8 KiB PUBLISH claiming a 64 KiB topic')
})
