import { createHash, timingSafeEqual } from 'node:crypto'
import net from 'node:net'
import { duplexPair } from 'node:stream'
import type { Duplex } from 'node:stream'
import { AddressLimit } from '../../common/address-limit.ts'
import type { Aedes, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes'
import { topicMatches } from '../../protocols/sensor-payload.ts'
import type { Logger } from '../../common/logger.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import type { PasswordFile } from './mqtt-passwords.ts'

/**
 * An MQTT broker inside the agent (aedes, MQTT 3.1.1), for a box whose sensors have no broker to publish to.
 * It keeps sessions and queued messages in memory: a restart of the agent loses what the broker held for
 * subscribers, so a box with a real broker (Mosquitto) should use that.
 *
 * Who may do what (the agent's own client is exempt from all of it; it connects in-process, never over TCP, so
 * it never competes with others for a connection):
 * - connect: with a user and password from the password file, when there is one; anonymously otherwise (then
 *   the broker listens on loopback only, which the config enforces). The agent's client id is reserved; other
 *   ids are at most MAX_CLIENT_ID_LENGTH characters; every session is clean (one kept would stay in memory for
 *   ever: a client that asks for a persistent one gets a clean one). A client whose user leaves the password file, or whose password changes, is disconnected.
 * - publish: only under the ingested topic filters, never retained, never at or under the agent's own subtrees
 *   (`<baseTopic>…`, `homeassistant…`) nor `$…`, never to a topic MQTT forbids (U+0000, other control characters,
 *   invalid UTF-8, wildcards). A refused publish closes the connection (MQTT 3.1.1 has no way to refuse one message).
 * - subscribe: only to what the agent publishes for others to read (`<baseTopic>/<name>/…`, `homeassistant/…`),
 *   at most MAX_SUBSCRIPTIONS filters a connection; any other filter is refused in the SUBACK (0x80) and the
 *   connection stays.
 * - packets: at most `maxPacketBytes`; a larger one closes the connection as soon as its header is read.
 * - connections: at most `maxClients`, and `maxClientsPerAddress` from one address.
 */

/** Why the broker refused something: the keys of the counts `stats()` returns. */
export const BROKER_REFUSALS = ['credentials', 'clientId', 'publish', 'subscribe', 'packetSize', 'connections', 'addressConnections', 'revoked'] as const
export type BrokerRefusal = typeof BROKER_REFUSALS[number]
/** The refusals as a metric: `noodle_mqtt_broker_refused_total{reason}` in GET /metrics. */
export const BROKER_REFUSED_METRIC = 'noodle_mqtt_broker_refused_total'

export interface EmbeddedBrokerStats {
  clients: number
  /** Refusals since start, by reason. */
  refused: Record<BrokerRefusal, number>
}

/** The agent's own client: the id reserved for it, and the per-start credentials only it holds. */
export interface AgentCredentials {
  clientId: string
  username: string
  password: string
}

export interface BrokerPolicy {
  agent: AgentCredentials
  /** Topic filters other clients may publish to (`mqtt.topics`). */
  publishFilters: readonly string[]
  /** Subtrees only the agent publishes to, as topic prefixes without the trailing "/". */
  agentSubtrees: readonly string[]
  /** Subtrees other clients may subscribe to. */
  readableSubtrees: readonly string[]
  maxPacketBytes: number
  maxClients: number
  maxClientsPerAddress: number
}

/** A refusal is logged at most this often per reason (the counts say how many there were). */
const REFUSAL_LOG_INTERVAL_MS = 60_000
/** How long a new connection may take to send CONNECT (aedes's default is 30 s). */
const CONNECT_TIMEOUT_MS = 10_000
/** The longest client id taken (MQTT 3.1.1 promises 23; the agent's own may be 64). */
export const MAX_CLIENT_ID_LENGTH = 64
/** Distinct filters one connection may subscribe to. */
export const MAX_SUBSCRIPTIONS = 32
/**
 * What no topic a client publishes may hold: U+0000 and the other control characters (MQTT §4.7.3, §1.5.3),
 * U+FFFD (what invalid UTF-8 decodes to: two topics would be one) and wildcards.
 */
const FORBIDDEN_IN_TOPIC = /[\u0000-\u001f\u007f-\u009f\ufffd+#]/

/**
 * Follows the MQTT framing of a byte stream (a type byte, a remaining length of 1–4 bytes, the body) to see
 * each packet's size as soon as its header arrives, so an oversized packet is refused before it is buffered.
 */
export class PacketSizeGuard {
  private readonly maxBytes: number
  private state: 'type' | 'length' | 'body' = 'type'
  private length = 0
  private lengthBytes = 0
  private remaining = 0

  constructor (maxBytes: number) {
    this.maxBytes = maxBytes
  }

  /** Takes the next bytes of the stream; false once a packet is larger than allowed (or its length malformed). */
  accept (chunk: Buffer): boolean {
    let i = 0
    while (i < chunk.length) {
      if (this.state === 'body') {
        const take = Math.min(this.remaining, chunk.length - i)
        this.remaining -= take
        i += take
        if (this.remaining === 0) this.state = 'type'
        continue
      }
      const byte = chunk[i++] as number
      if (this.state === 'type') {
        this.state = 'length'
        this.length = 0
        this.lengthBytes = 0
        continue
      }
      this.length += (byte & 0x7f) * 128 ** this.lengthBytes
      this.lengthBytes++
      if ((byte & 0x80) !== 0) {
        if (this.lengthBytes === 4) return false
        continue
      }
      if (1 + this.lengthBytes + this.length > this.maxBytes) return false
      this.remaining = this.length
      this.state = this.length === 0 ? 'type' : 'body'
    }
    return true
  }
}

function authError (returnCode: 2 | 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

/** Equal strings, compared in a time that does not depend on where they differ. */
function sameSecret (a: string, b: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(a), digest(b))
}

function remoteOf (client: Client): string | undefined {
  return (client.conn as net.Socket).remoteAddress
}

/** Whether the filter or topic lies under `subtree` (or is `subtree` itself, when `orAt`). */
function withinSubtree (filterOrTopic: string, subtree: string, orAt = false): boolean {
  const levels = filterOrTopic.split('/')
  const prefix = subtree.split('/')
  return (levels.length > prefix.length || (orAt && levels.length === prefix.length)) && prefix.every((level, i) => levels[i] === level)
}

export class EmbeddedBroker {
  private readonly host: string
  private readonly port: number
  private readonly log: Logger
  private readonly policy: BrokerPolicy
  private readonly passwords: PasswordFile | null
  private readonly metrics: MetricsStore
  private broker: Aedes | undefined
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  /** The connections that proved to be the agent's own client. */
  private readonly agentClients = new WeakSet<Client>()
  /** Each other client's user and what its password was when it connected: a reload that changes it ends it. */
  private readonly logins = new WeakMap<Client, { username: string, password: string | undefined }>()
  /** The filters each client was granted. */
  private readonly granted = new WeakMap<Client, Set<string>>()
  private readonly closedForSize = new WeakSet<object>()
  private readonly lastLogged = new Map<BrokerRefusal, number>()

  constructor (components: { host: string, port: number, log: Logger, policy: BrokerPolicy, passwords: PasswordFile | null, metrics: MetricsStore }) {
    this.host = components.host
    this.port = components.port
    this.log = components.log
    this.policy = components.policy
    this.passwords = components.passwords
    this.metrics = components.metrics
  }

  /** Where the agent itself reaches the broker: loopback when it listens on every address. */
  get url (): string {
    const host = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host
    return `mqtt://${net.isIPv6(host) ? `[${host}]` : host}:${this.port}`
  }

  stats (): EmbeddedBrokerStats {
    const refused = Object.fromEntries(BROKER_REFUSALS.map((reason) => [reason, this.metrics.get(BROKER_REFUSED_METRIC, { reason })]))
    return { clients: this.sockets.size, refused: refused as Record<BrokerRefusal, number> }
  }

  async start (): Promise<void> {
    this.passwords?.start()
    // Loaded only where the embedded broker runs: ~3 MB that a box using another broker, or none, does without.
    const { Aedes } = await import('aedes')
    const broker = await Aedes.createBroker({
      connectTimeout: CONNECT_TIMEOUT_MS,
      // A persistent session would keep a client's subscriptions and queue in memory for ever after it leaves, so
      // everyone but the agent gets a clean one (session present: 0, as MQTT lets a broker answer), though it asked
      // for more: refusing would shut out devices that ask by default (ESPHome does).
      preConnect: (client, packet, done) => {
        if (packet.clientId !== this.policy.agent.clientId) packet.clean = true
        done(null, true)
      },
      authenticate: (client, username, password, done) => {
        this.authenticate(client, username, password).then((error) => { done(error, error === null) }, (err: Error) => {
          this.log.error({ err }, 'mqtt broker: could not check a password')
          done(authError(5, 'not authorized'), false)
        })
      },
      authorizePublish: (client, packet, done) => { done(this.publishProblem(client, packet)) },
      authorizeSubscribe: (client, subscription, done) => { done(null, this.mayRead(client, subscription) ? subscription : null) }
    })
    const perAddress = new AddressLimit(this.policy.maxClientsPerAddress)
    const server = net.createServer((socket) => {
      if (!perAddress.admit(socket)) {
        this.refuse('addressConnections', { remote: socket.remoteAddress, maxClientsPerAddress: this.policy.maxClientsPerAddress }, 'a connection over the limit for its address; closed')
        socket.destroy()
        return
      }
      this.sockets.add(socket)
      socket.once('close', () => { this.sockets.delete(socket) })
      socket.on('error', () => {}) // aedes handles the client's errors; a reset before it does must not throw
      broker.handle(socket)
      // With aedes reading the socket ('readable'), 'data' sees each chunk as aedes reads it, before it parses.
      const guard = new PacketSizeGuard(this.policy.maxPacketBytes)
      socket.on('data', (chunk: Buffer) => {
        if (guard.accept(chunk)) return
        this.closedForSize.add(socket)
        this.refuse('packetSize', { remote: socket.remoteAddress, maxPacketBytes: this.policy.maxPacketBytes }, 'a packet over the size limit; connection closed')
        socket.destroy()
      })
    })
    server.maxConnections = this.policy.maxClients
    server.on('drop', (data) => {
      this.refuse('connections', { remote: data?.remoteAddress, maxClients: this.policy.maxClients }, 'a connection over the limit; closed')
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, this.host, () => { server.off('error', reject); resolve() })
    })
    this.broker = broker
    this.server = server
    this.passwords?.on('reloaded', this.endStaleLogins)
    this.log.info({ host: this.host, port: this.port, users: this.passwords?.size ?? null }, 'embedded MQTT broker listening')
  }

  /**
   * A connection for the agent's own client, inside the process: it takes no TCP slot, so clients that hold every
   * slot cannot keep the agent from its own broker.
   */
  connectLocal (): Duplex {
    const broker = this.broker
    if (broker === undefined) throw new Error('the embedded broker is not running')
    const [agentSide, brokerSide] = duplexPair()
    broker.handle(brokerSide)
    return agentSide
  }

  async stop (): Promise<void> {
    this.passwords?.stop()
    this.passwords?.off('reloaded', this.endStaleLogins)
    const { server, broker } = this
    this.server = undefined
    this.broker = undefined
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
      for (const socket of this.sockets) socket.destroy()
      await closed
    }
    if (broker !== undefined) await new Promise<void>((resolve) => { broker.close(() => { resolve() }) })
  }

  /** null to let the client in, or why not. */
  private async authenticate (client: Client, username: string | undefined, password: Buffer | undefined): Promise<AuthenticateError | null> {
    const agent = this.policy.agent
    if (client.id === agent.clientId) {
      if (username === agent.username && password !== undefined && sameSecret(password.toString('utf8'), agent.password)) {
        this.agentClients.add(client)
        return null
      }
      this.refuse('clientId', { clientId: client.id, remote: remoteOf(client) }, 'a client took the agent\'s own client id; refused')
      return authError(2, 'this client id is reserved')
    }
    if (client.id.length > MAX_CLIENT_ID_LENGTH) {
      this.refuse('clientId', { clientId: client.id.slice(0, MAX_CLIENT_ID_LENGTH), remote: remoteOf(client) }, `a client id over ${MAX_CLIENT_ID_LENGTH} characters; refused`)
      return authError(2, `client ids are at most ${MAX_CLIENT_ID_LENGTH} characters`)
    }
    if (this.passwords === null) return null
    if (username === undefined) {
      this.refuse('credentials', { clientId: client.id, remote: remoteOf(client) }, 'a client without credentials; refused')
      return authError(5, 'not authorized')
    }
    if (await this.passwords.check(username, password)) {
      this.logins.set(client, { username, password: this.passwords.fingerprint(username) })
      return null
    }
    this.refuse('credentials', { clientId: client.id, username, remote: remoteOf(client) }, 'a wrong user name or password; refused')
    return authError(4, 'bad user name or password')
  }

  private publishProblem (client: Client | null, packet: PublishPacket): Error | null {
    // null: the broker's own publications ($SYS, wills it restores).
    if (client === null || this.agentClients.has(client)) return null
    const topic = packet.topic
    // The size guard closed this connection, but aedes still parses what it had read: nothing of it goes on.
    if (this.closedForSize.has(client.conn)) return new Error('the connection was closed for an oversized packet')
    const { publishFilters, agentSubtrees } = this.policy
    let problem: string | null = null
    if (packet.retain) problem = 'retained messages are refused'
    else if (FORBIDDEN_IN_TOPIC.test(topic)) problem = 'the topic holds a control character, invalid UTF-8 or a wildcard'
    else if (topic.startsWith('$')) problem = 'topics starting with "$" are the broker\'s'
    else if (agentSubtrees.some((subtree) => withinSubtree(topic, subtree, true))) problem = 'the topic is the agent\'s own'
    else if (!publishFilters.some((filter) => topicMatches(filter, topic))) problem = 'the topic is not one the agent ingests'
    if (problem === null) return null
    this.refuse('publish', { clientId: client.id, topic: JSON.stringify(topic.slice(0, 200)), retain: packet.retain, why: problem }, 'a publish refused; connection closed')
    return new Error(problem)
  }

  private mayRead (client: Client, subscription: Subscription): boolean {
    if (this.agentClients.has(client)) return true
    const topic = subscription.topic
    let granted = this.granted.get(client)
    if (granted === undefined) this.granted.set(client, granted = new Set())
    let why = 'the filter is not one of the agent\'s own topics'
    if (this.policy.readableSubtrees.some((subtree) => withinSubtree(topic, subtree))) {
      if (granted.has(topic) || granted.size < MAX_SUBSCRIPTIONS) {
        granted.add(topic)
        return true
      }
      why = `over the ${MAX_SUBSCRIPTIONS} filters a connection may subscribe to`
    }
    this.refuse('subscribe', { clientId: client.id, topic: JSON.stringify(topic.slice(0, 200)), why }, 'a subscription refused')
    return false
  }

  /** After the password file changed: disconnects each client whose user is gone or whose password changed. */
  private readonly endStaleLogins = (): void => {
    const { broker, passwords } = this
    if (broker === undefined || passwords === null) return
    // aedes keeps its connected clients by id; its types leave the map out.
    for (const client of Object.values((broker as unknown as { clients: Record<string, Client> }).clients)) {
      const login = this.logins.get(client)
      if (login === undefined || passwords.fingerprint(login.username) === login.password) continue
      this.logins.delete(client)
      this.refuse('revoked', { clientId: client.id, username: login.username }, 'a client whose user left the password file, or whose password changed; disconnected')
      client.close()
    }
  }

  private refuse (reason: BrokerRefusal, details: Record<string, unknown>, message: string): void {
    this.metrics.inc(BROKER_REFUSED_METRIC, { reason })
    const now = Date.now()
    if (now - (this.lastLogged.get(reason) ?? -Infinity) < REFUSAL_LOG_INTERVAL_MS) return
    this.lastLogged.set(reason, now)
    this.log.warn({ ...details, refused: this.metrics.get(BROKER_REFUSED_METRIC, { reason }) },
      `mqtt broker: ${message} (logged once a minute; counts in GET /api/v1/ingest)`)
  }
}
