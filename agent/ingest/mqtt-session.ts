import { EventEmitter } from 'node:events'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import mqttPacket from 'mqtt-packet'
import type { IConnackPacket, IConnectPacket, IDisconnectPacket, IPublishPacket, ISubackPacket, Packet } from 'mqtt-packet'
import type { Logger } from '../../common/logger.ts'
import type { MetricsStore } from '../metrics/metrics.ts'

/**
 * One MQTT 5 connection to a broker, kept up: connect, subscribe, deliver, reconnect with backoff.
 *
 * Why not MQTT.js: it handles one incoming packet per tick and sends each PUBACK before it reads the next
 * packet, so holding a PUBACK until the batch holding the message is committed would hold every later message
 * too (one message per commit). This session parses with MQTT.js's own codec (mqtt-packet), hands each message
 * on as it arrives, and sends the PUBACKs of a committed batch together, when told to (`ack`).
 */

export interface InboundMessage {
  topic: string
  payload: Buffer
  qos: 0 | 1
  /** Set for QoS 1: the id to acknowledge once the message is safe. */
  messageId: number | undefined
  /** Which connection delivered it: a PUBACK goes only back down that connection. */
  connection: number
  /** Set when the packet was over maxPacketBytes: its size. Its payload was dropped unread (`payload` is empty). */
  oversize?: number
}

export interface SessionTls {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  rejectUnauthorized: boolean
}

export interface SessionOptions {
  /** mqtt://, mqtts://, ws:// or wss:// */
  url: string
  /** A connection to a broker in this process, used instead of `url` (which then only names it in logs). */
  local?: () => Duplex
  clientId: string
  username?: string
  password?: string
  tls?: SessionTls
  keepaliveS: number
  /** How long the broker keeps our subscriptions and queued messages while we are away (MQTT 5). */
  sessionExpiryS: number
  /** How many unacknowledged QoS 1 messages the broker may send us: the ingest back-pressure (MQTT 5). */
  receiveMaximum: number
  subscriptions: ReadonlyArray<{ topic: string, qos: 0 | 1 }>
  /**
   * The largest packet we take (MQTT 5 Maximum Packet Size, sent in CONNECT: the broker drops larger messages
   * for us). A larger message from a broker that sends one anyway (3.1.1 has no such limit) is handed on without
   * its payload, which is dropped unread (`oversize`); any other larger packet closes the connection. Nothing
   * over the limit is buffered. Default DEFAULT_MAX_PACKET_BYTES.
   */
  maxPacketBytes?: number
  will?: { topic: string, payload: string, retain: boolean, qos: 0 | 1 }
  backoffMinMs?: number
  backoffMaxMs?: number
}

export interface SessionEvents {
  message: [InboundMessage]
  connected: [{ connection: number, sessionPresent: boolean }]
  disconnected: [{ reason: string }]
}

/** A byte pipe to the broker: a TCP or TLS socket, or a WebSocket. */
interface Transport {
  write: (bytes: Buffer) => void
  pause: () => void
  resume: () => void
  end: () => void
  destroy: () => void
}

interface TransportHandlers {
  onOpen: () => void
  onData: (bytes: Buffer) => void
  onClose: (why: string) => void
}

/** The packet limit when none is given: a 64 KiB payload with the longest topic and some properties. */
export const DEFAULT_MAX_PACKET_BYTES = maxPacketBytesFor(65_536)

/**
 * The packet limit that lets every payload of up to `maxPayloadBytes` through, whatever its topic (MQTT allows
 * 64 KiB) and properties: larger payloads still reach ingest, and its dead letter, up to this size.
 */
export function maxPacketBytesFor (maxPayloadBytes: number): number {
  return maxPayloadBytes + 0xffff + 4096
}

/** What a PacketFramer hands on. */
export interface FramerHandlers {
  /** Bytes of packets within the limit, in order: for the MQTT parser. */
  packets: (bytes: Buffer) => void
  /** A PUBLISH over the limit, read no further than its packet id. */
  oversizePublish: (publish: { topic: string, qos: number, messageId: number | undefined, size: number }) => void
}

/** The part of an oversize PUBLISH that is kept: its fixed header's flags and the bytes up to its packet id. */
interface OversizePublish { flags: number, size: number, head: Buffer, left: number }

const PUBLISH = 3

/**
 * Finds packet boundaries in the bytes from the broker, from each packet's fixed header, and hands the packets
 * within `limit` bytes on to the MQTT parser. A PUBLISH over the limit is never buffered: its topic and packet id
 * are kept (so that it can be dead-lettered and acknowledged, and is not re-sent forever), the rest is dropped
 * as it streams past. `push` returns false for any other packet over the limit, or a malformed length: the
 * connection is to be closed.
 */
export class PacketFramer {
  private readonly limit: number
  private readonly handlers: FramerHandlers
  /** The fixed header of the next packet, as far as it has come (a type byte and up to 4 length bytes). */
  private header: number[] = []
  /** Bytes of the current packet within the limit still to hand on. */
  private passing = 0
  private oversize: OversizePublish | null = null

  constructor (limit: number, handlers: FramerHandlers) {
    this.limit = limit
    this.handlers = handlers
  }

  push (chunk: Buffer): boolean {
    let pos = 0
    /** Where the bytes still to hand on begin. */
    let runStart = 0
    /** Where, in this chunk, the header being read began (0 also when it began in an earlier chunk). */
    let headerAt = 0
    while (pos < chunk.length) {
      if (this.passing > 0) {
        const n = Math.min(this.passing, chunk.length - pos)
        this.passing -= n
        pos += n
        continue
      }
      if (this.oversize !== null) {
        pos = this.dropOversize(chunk, pos)
        if (pos < 0) return false
        runStart = pos
        continue
      }
      if (this.header.length === 0) headerAt = pos
      const byte = chunk[pos++] as number
      this.header.push(byte)
      if (this.header.length === 1 || (byte & 0x80) !== 0) {
        if (this.header.length === 5) return false // a length takes at most 4 bytes (MQTT §1.5.5)
        continue
      }
      let length = 0
      for (let i = this.header.length - 1; i >= 1; i--) length = length * 128 + ((this.header[i] as number) & 0x7f)
      const carried = headerAt === 0 && this.header.length > pos ? Buffer.from(this.header.slice(0, this.header.length - pos)) : null
      const first = this.header[0] as number
      const size = this.header.length + length
      this.header = []
      if (size <= this.limit) {
        // Header bytes that came in the last chunk were held back: they go first.
        if (carried !== null) this.handlers.packets(carried)
        this.passing = length
        continue
      }
      if (first >> 4 !== PUBLISH) return false
      if (headerAt > runStart) this.handlers.packets(chunk.subarray(runStart, headerAt))
      this.oversize = { flags: first & 0x0f, size, head: Buffer.alloc(0), left: length }
      runStart = pos
    }
    // A header not yet complete is held back, so that an oversize packet's never reaches the parser.
    const end = this.header.length > 0 ? headerAt : chunk.length
    if (end > runStart) this.handlers.packets(chunk.subarray(runStart, end))
    return true
  }

  /** Reads an oversize PUBLISH's topic and packet id and drops the rest; returns where it stopped, or -1 if malformed. */
  private dropOversize (chunk: Buffer, pos: number): number {
    const o = this.oversize as OversizePublish
    const qos = (o.flags >> 1) & 3
    const wanted = () => o.head.length < 2 ? 2 : 2 + o.head.readUInt16BE(0) + (qos > 0 ? 2 : 0)
    let at = pos
    while (at < chunk.length && o.left > 0) {
      const keep = Math.max(0, wanted() - o.head.length)
      const n = Math.min(chunk.length - at, o.left, keep > 0 ? keep : o.left)
      if (keep > 0) o.head = Buffer.concat([o.head, chunk.subarray(at, at + n)])
      o.left -= n
      at += n
    }
    if (o.left > 0) return at
    this.oversize = null
    if (o.head.length < wanted()) return -1
    const topicLength = o.head.readUInt16BE(0)
    this.handlers.oversizePublish({
      topic: o.head.toString('utf8', 2, 2 + topicLength),
      qos,
      messageId: qos > 0 ? o.head.readUInt16BE(2 + topicLength) : undefined,
      size: o.size
    })
    return at
  }
}

const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'mqtts:': 8883, 'ws:': 80, 'wss:': 443 }
/** CONNACK and DISCONNECT reason codes an operator is likely to meet (MQTT 5 §3.2.2.2). */
const REASONS: Record<number, string> = {
  0x80: 'unspecified error',
  0x84: 'unsupported protocol version',
  0x85: 'client identifier not valid',
  0x86: 'bad user name or password',
  0x87: 'not authorized',
  0x88: 'server unavailable',
  0x89: 'server busy',
  0x8b: 'server shutting down',
  0x8e: 'session taken over',
  0x93: 'receive maximum exceeded',
  0x95: 'packet too large',
  0x97: 'quota exceeded',
  0x9c: 'use another server',
  0x9f: 'connection rate exceeded'
}

/** A topic as a log line shows it: quoted (no control character gets through raw), and at most 200 characters. */
export function logTopic (topic: string): string {
  return JSON.stringify(topic.length > 200 ? `${topic.slice(0, 200)}…` : topic)
}

/** The oversize-message warning is logged at most this often (the count says how many there were). */
const OVERSIZE_LOG_INTERVAL_MS = 60_000

export function reasonText (code: number): string {
  return REASONS[code] ?? `reason code 0x${code.toString(16)}`
}

/** A transport over a byte stream: a TCP or TLS socket, or a stream to a broker in this process. */
function streamTransport (stream: Duplex, handlers: TransportHandlers): Transport {
  let why = 'connection closed'
  stream.on('data', handlers.onData)
  stream.on('error', (err) => { why = err.message })
  stream.on('close', () => { handlers.onClose(why) })
  return {
    write: (bytes) => { stream.write(bytes) },
    pause: () => { stream.pause() },
    resume: () => { stream.resume() },
    end: () => { stream.end() },
    destroy: () => { stream.destroy() }
  }
}

/** A transport over a stream to a broker in this process: open at once, closed when either side ends. */
function localTransport (stream: Duplex, handlers: TransportHandlers): Transport {
  setImmediate(handlers.onOpen)
  // A socket closes itself once the other side ends; an in-process stream must be told.
  stream.on('end', () => { stream.destroy() })
  return streamTransport(stream, handlers)
}

function openTransport (url: URL, tlsOptions: SessionTls | undefined, handlers: TransportHandlers): Transport {
  if (url.protocol === 'ws:' || url.protocol === 'wss:') {
    const ws = new WebSocket(url, ['mqtt'])
    ws.binaryType = 'arraybuffer'
    ws.onopen = () => { handlers.onOpen() }
    ws.onmessage = (event) => { handlers.onData(Buffer.from(event.data as ArrayBuffer)) }
    ws.onclose = (event) => { handlers.onClose(event.reason !== '' ? event.reason : `websocket closed (${event.code})`) }
    ws.onerror = () => {} // onclose follows with the reason
    return {
      write: (bytes) => { ws.send(bytes) },
      pause: () => {},
      resume: () => {},
      end: () => { ws.close() },
      destroy: () => { ws.close() }
    }
  }
  const port = Number(url.port !== '' ? url.port : DEFAULT_PORTS[url.protocol])
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const socket = url.protocol === 'mqtts:'
    ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined, ...tlsOptions })
    : net.connect({ host, port })
  socket.setNoDelay(true)
  socket.once(url.protocol === 'mqtts:' ? 'secureConnect' : 'connect', handlers.onOpen)
  return streamTransport(socket, handlers)
}

/**
 * QoS 1 messages the broker sent again, flagged DUP (after a reconnect, or a broker restart): each may already be
 * stored, so each may be a duplicate row. At-least-once costs this many at most, with what publishers resend.
 */
export const REDELIVERED_METRIC = 'noodle_mqtt_redelivered_total'

export class MqttSession extends EventEmitter<SessionEvents> {
  private readonly options: SessionOptions
  private readonly log: Logger
  private readonly metrics: MetricsStore
  private readonly url: URL
  private transport: Transport | undefined
  /** Counts connections, so that acknowledgements meant for an earlier one are never sent down a later one. */
  private connection = 0
  private isConnected = false
  private stopping = false
  private backoffMs: number
  private reconnectTimer: NodeJS.Timeout | undefined
  private keepaliveTimer: NodeJS.Timeout | undefined
  private awaitingPong = false
  /** Failed connection attempts since the last success: the first is worth a warning, the rest are not. */
  private failures = 0
  private nextPacketId = 1
  /** MQTT 5 until a broker turns it down; then 3.1.1 (aedes, older brokers), without the MQTT 5 properties. */
  private protocolVersion: 4 | 5 = 5
  private closed: Promise<void> = Promise.resolve()
  /** Paused by `pause`: a new connection pauses once connected, so a reconnect does not undo the back-pressure. */
  private paused = false
  private oversize = 0
  private oversizeLoggedAt = -Infinity

  constructor (components: { options: SessionOptions, log: Logger, metrics: MetricsStore }) {
    super()
    this.options = components.options
    this.log = components.log
    this.metrics = components.metrics
    this.url = new URL(this.options.url)
    this.backoffMs = this.options.backoffMinMs ?? 250
  }

  get connected (): boolean {
    return this.isConnected
  }

  /** Packets the broker sent over maxPacketBytes. */
  get oversizePackets (): number {
    return this.oversize
  }

  /** The broker's address without credentials, for logs and the operator. */
  get broker (): string {
    return `${this.url.protocol}//${this.url.host}${this.url.pathname === '/' ? '' : this.url.pathname}`
  }

  /** Starts connecting; the broker need not be up yet. */
  start (): void {
    this.stopping = false
    this.connect()
  }

  /** Disconnects cleanly: the broker keeps the session (and queues for it) but does not send the will. */
  async stop (): Promise<void> {
    this.stopping = true
    clearTimeout(this.reconnectTimer)
    clearInterval(this.keepaliveTimer)
    if (this.transport !== undefined) {
      if (this.isConnected) this.send({ cmd: 'disconnect', reasonCode: 0 })
      this.transport.end()
      const transport = this.transport
      const timer = setTimeout(() => { transport.destroy() }, 1_000)
      await this.closed
      clearTimeout(timer)
    }
  }

  /** Publishes at QoS 0 (state and results: the next one supersedes it). Returns false while disconnected. */
  publish (topic: string, payload: string | Buffer, options: { retain?: boolean } = {}): boolean {
    if (!this.isConnected) return false
    this.send({ cmd: 'publish', topic, payload, qos: 0, retain: options.retain ?? false, dup: false })
    return true
  }

  /** Acknowledges QoS 1 messages of connection `connection`, all in one write; those of an earlier connection are dropped (the broker sends them again). */
  ack (connection: number, messageIds: readonly number[]): void {
    if (connection !== this.connection || !this.isConnected || messageIds.length === 0) return
    // A PUBACK with reason "success" and no properties is 4 bytes (MQTT 5 §3.4.2.1): built here, not by the
    // codec, because there is one per message.
    const bytes = Buffer.allocUnsafe(4 * messageIds.length)
    for (let i = 0; i < messageIds.length; i++) {
      const id = messageIds[i] as number
      bytes[4 * i] = 0x40
      bytes[4 * i + 1] = 2
      bytes[4 * i + 2] = id >> 8
      bytes[4 * i + 3] = id & 0xff
    }
    this.transport?.write(bytes)
  }

  /** Stops reading from the broker (TCP back-pressure) until `resume`. */
  pause (): void {
    this.paused = true
    this.transport?.pause()
  }

  resume (): void {
    this.paused = false
    this.transport?.resume()
  }

  private send (packet: Packet): void {
    this.transport?.write(mqttPacket.generate(packet, { protocolVersion: this.protocolVersion }))
  }

  private connect (): void {
    const parser = mqttPacket.parser({ protocolVersion: this.protocolVersion })
    let resolveClosed: () => void = () => {}
    this.closed = new Promise((resolve) => { resolveClosed = resolve })
    const maxPacketBytes = this.options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES
    const framer = new PacketFramer(maxPacketBytes, {
      packets: (bytes) => { parser.parse(bytes) },
      oversizePublish: (p) => { if (this.transport === transport) this.onOversizePublish(p, maxPacketBytes) }
    })
    let transport: Transport
    try {
      const handlers: TransportHandlers = {
        onOpen: () => { this.sendConnect() },
        onData: (bytes) => {
          if (!framer.push(bytes)) this.onOversize(maxPacketBytes)
        },
        onClose: (why) => {
          if (this.transport === transport) this.onClosed(why)
          resolveClosed()
        }
      }
      const local = this.options.local
      transport = local === undefined ? openTransport(this.url, this.options.tls, handlers) : localTransport(local(), handlers)
    } catch (err) {
      // TLS options OpenSSL refuses (a client certificate that is not PEM) throw here, in a reconnect timer: retried, not fatal.
      resolveClosed()
      this.onClosed((err as Error).message)
      return
    }
    this.transport = transport
    parser.on('packet', (packet: Packet) => { if (this.transport === transport) this.onPacket(packet) })
    parser.on('error', (err: Error) => {
      this.log.warn({ err, broker: this.broker }, 'mqtt: malformed packet from the broker; reconnecting')
      transport.destroy()
    })
  }

  private sendConnect (): void {
    const o = this.options
    const packet: IConnectPacket = {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: this.protocolVersion,
      clientId: o.clientId,
      // A persistent session: while we are away the broker queues our QoS 1 messages, and sends again any we
      // had not acknowledged.
      clean: false,
      keepalive: o.keepaliveS,
      properties: { sessionExpiryInterval: o.sessionExpiryS, receiveMaximum: o.receiveMaximum, maximumPacketSize: o.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES }
    }
    if (o.username !== undefined) packet.username = o.username
    if (o.password !== undefined) packet.password = Buffer.from(o.password)
    if (o.will !== undefined) packet.will = { ...o.will }
    this.send(packet)
  }

  private onPacket (packet: Packet): void {
    switch (packet.cmd) {
      case 'publish': {
        const p = packet as IPublishPacket
        if (p.dup && p.qos !== 0) this.metrics.inc(REDELIVERED_METRIC)
        // We subscribe at QoS 1 at most, so the broker never sends QoS 2.
        this.emit('message', {
          topic: p.topic,
          payload: p.payload as Buffer,
          qos: p.qos === 0 ? 0 : 1,
          messageId: p.qos === 0 ? undefined : p.messageId,
          connection: this.connection
        })
        return
      }
      case 'connack':
        this.onConnack(packet as IConnackPacket)
        return
      case 'suback':
        this.onSuback(packet as ISubackPacket)
        return
      case 'pingresp':
        this.awaitingPong = false
        return
      case 'disconnect': {
        const code = (packet as IDisconnectPacket).reasonCode ?? 0
        this.log.warn({ broker: this.broker, reason: reasonText(code) }, 'mqtt: the broker disconnected us')
        return
      }
      default:
        // PUBACKs for nothing we sent at QoS 1, AUTH…: nothing to do.
    }
  }

  /** A message over our limit (from a broker that ignores it, as 3.1.1 ones must): handed on, without its payload. */
  private onOversizePublish (p: { topic: string, qos: number, messageId: number | undefined, size: number }, limit: number): void {
    this.oversize++
    const now = Date.now()
    if (now - this.oversizeLoggedAt >= OVERSIZE_LOG_INTERVAL_MS) {
      this.oversizeLoggedAt = now
      this.log.warn({ broker: this.broker, topic: logTopic(p.topic), bytes: p.size, limit, oversizePackets: this.oversize },
        'mqtt: the broker sent a message over our maximum packet size; its payload was dropped unread (logged once a minute)')
    }
    this.emit('message', { topic: p.topic, payload: Buffer.alloc(0), qos: p.qos === 0 ? 0 : 1, messageId: p.messageId, connection: this.connection, oversize: p.size })
  }

  /** Any other packet over our limit, or a malformed length: drop the connection (MQTT 5 §4.13: reason 0x95). */
  private onOversize (limit: number): void {
    const transport = this.transport
    if (transport === undefined) return
    this.oversize++
    this.log.warn({ broker: this.broker, limit }, 'mqtt: the broker sent a packet over our maximum packet size, or a malformed one; reconnecting')
    if (this.isConnected && this.protocolVersion === 5) this.send({ cmd: 'disconnect', reasonCode: 0x95 })
    this.transport = undefined
    this.onClosed('packet too large')
    transport.destroy()
  }

  private onConnack (packet: IConnackPacket): void {
    const code = packet.reasonCode ?? packet.returnCode ?? 0
    // 0x84 is MQTT 5's "unsupported protocol version"; a 3.1.1 broker answers 1, its own code for the same.
    if ((code === 0x84 || code === 1) && this.protocolVersion === 5) {
      this.log.info({ broker: this.broker }, 'mqtt: the broker speaks MQTT 3.1.1, not 5; using 3.1.1')
      this.protocolVersion = 4
      this.backoffMs = 0
      this.transport?.destroy()
      return
    }
    if (code !== 0) {
      this.log.error({ broker: this.broker, reason: reasonText(code) }, 'mqtt: the broker refused the connection')
      this.transport?.destroy()
      return
    }
    this.connection++
    this.isConnected = true
    if (this.paused) this.transport?.pause()
    this.failures = 0
    this.backoffMs = this.options.backoffMinMs ?? 250
    this.log.info({ broker: this.broker, sessionPresent: packet.sessionPresent }, 'mqtt: connected')
    if (this.options.subscriptions.length > 0) {
      this.send({ cmd: 'subscribe', messageId: this.packetId(), subscriptions: this.options.subscriptions.map((s) => ({ ...s })) })
    }
    this.awaitingPong = false
    clearInterval(this.keepaliveTimer)
    // Ping at half the keepalive; a ping unanswered by the next one means the link is gone.
    this.keepaliveTimer = setInterval(() => {
      if (this.awaitingPong) {
        this.log.warn({ broker: this.broker }, 'mqtt: the broker stopped answering pings; reconnecting')
        this.transport?.destroy()
        return
      }
      this.awaitingPong = true
      this.send({ cmd: 'pingreq' })
    }, this.options.keepaliveS * 500)
    this.emit('connected', { connection: this.connection, sessionPresent: packet.sessionPresent })
  }

  private onSuback (packet: ISubackPacket): void {
    // MQTT 5 SUBACKs carry one reason code per filter: the granted QoS, or 0x80 and above for a refusal.
    (packet.granted as number[]).forEach((code, i) => {
      if (code >= 0x80) {
        this.log.error({ broker: this.broker, topic: this.options.subscriptions[i]?.topic, reason: reasonText(code) },
          'mqtt: the broker refused a subscription')
      }
    })
  }

  private onClosed (why: string): void {
    const wasConnected = this.isConnected
    this.isConnected = false
    this.transport = undefined
    clearInterval(this.keepaliveTimer)
    if (wasConnected) this.emit('disconnected', { reason: why })
    if (this.stopping) return
    const delay = Math.round(this.backoffMs * (0.8 + 0.4 * Math.random()))
    if (!wasConnected) this.failures++
    this.log[wasConnected || this.failures === 1 ? 'warn' : 'debug']({ broker: this.broker, reason: why, retryInMs: delay },
      wasConnected ? 'mqtt: connection lost' : 'mqtt: cannot connect to the broker')
    this.backoffMs = Math.min(Math.max(this.backoffMs * 2, this.options.backoffMinMs ?? 250), this.options.backoffMaxMs ?? 30_000)
    this.reconnectTimer = setTimeout(() => { this.connect() }, delay)
  }

  private packetId (): number {
    const id = this.nextPacketId
    this.nextPacketId = id === 0xffff ? 1 : id + 1
    return id
  }
}
