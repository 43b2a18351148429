import { readFileSync } from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { issueKey } from '../../protocols/codec.ts'
import { topicRuleProblem } from '../../protocols/sensor-payload.ts'
import { nameText } from '../../common/text.ts'
import { DEFAULT_REMOTE_MAX_MODEL_BYTES, DEFAULT_REMOTE_SOURCES, remoteSourceEntry, WorkItemSchema } from '../../protocols/work.ts'
import { DEFAULT_MAX_MEMBERS } from '../membership/membership.ts'
import { DEFAULT_MAX_SENSORS } from '../ingest/sensor-store.ts'
import { ConfigError } from '../../common/errors.ts'
import { LOG_LEVELS } from '../../common/logger.ts'
import type { LogLevel } from '../../common/logger.ts'

export { LOG_LEVELS }
export type { LogLevel }

/**
 * Configuration comes from four layers, later ones winning: built-in defaults, a JSON file (`--config FILE` or
 * NOODLE_CONFIG), the environment (NOODLE_*), then command-line flags. Each key's environment variable is its
 * dotted path in upper snake case: `membership.probeAfterMs` → NOODLE_MEMBERSHIP_PROBE_AFTER_MS.
 * Everything is validated once, at start, and an error names the key and where its value came from.
 */

function isMultiaddr (value: string): boolean {
  try {
    multiaddr(value)
    return true
  } catch {
    return false
  }
}


const multiaddrString = z.string().refine(isMultiaddr, 'is not a multiaddr')
const tcpMultiaddr = multiaddrString.refine(
  (value) => /^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+$/.test(value),
  'must be a TCP listen address such as /ip4/0.0.0.0/tcp/4001'
)
const bootstrapMultiaddr = multiaddrString.refine(
  (value) => /^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+\/p2p\/[1-9A-HJ-NP-Za-km-z]+$/.test(value),
  'must be a TCP address ending in the peer id, such as /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…'
)
const milliseconds = (min: number, max: number) => z.int().min(min).max(max)

/** The peer ids of bootstrap addresses (validated to end in `/p2p/<id>`). */
export function bootstrapPeerIds (bootstrap: readonly string[]): string[] {
  return bootstrap.map((address) => address.slice(address.lastIndexOf('/p2p/') + 5))
}

/** An MQTT topic filter: `+` fills one whole level, `#` only the last. */
const topicFilter = z.string().min(1).max(1024).refine(
  (f) => !f.includes('\0') && f.split('/').every((level, i, all) =>
    (level !== '#' || i === all.length - 1) && (!level.includes('#') || level === '#') && (!level.includes('+') || level === '+')),
  'is not an MQTT topic filter ("+" must fill a level, "#" must be the last level)'
)
const mqttUrl = z.string().refine((u) => {
  try {
    return ['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(new URL(u).protocol)
  } catch {
    return false
  }
}, 'must be an mqtt://, mqtts://, ws:// or wss:// URL, such as mqtt://192.0.2.10:1883')

const MqttSchema = z.strictObject({
  /** The broker to use. Unset: the embedded broker, if it runs; else no MQTT at all. */
  url: mqttUrl.optional(),
  username: z.string().min(1).max(256).optional(),
  /** A file holding the password, so that it is in neither the config nor the process list. */
  passwordFile: z.string().min(1).optional(),
  /** Defaults to noodle-<name>: stable, so the broker keeps our session across restarts. */
  clientId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1–64 letters, digits, ".", "_" or "-"').optional(),
  /** For mqtts://: PEM files of the CA, and of our certificate and key when the broker wants one. */
  tls: z.strictObject({
    caFile: z.string().min(1).optional(),
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    rejectUnauthorized: z.boolean()
  }),
  /** Topic filters to ingest into the store. None: nothing is ingested (the box still publishes its presence). */
  topics: z.array(topicFilter).max(64),
  /** How topics name sensors and metrics (Telegraf's topic_parsing); the first rule that matches applies. */
  topicParsing: z.array(z.strictObject({ topic: topicFilter, levels: z.string().min(1).max(1024) })
    .superRefine((rule, ctx) => {
      const problem = topicRuleProblem(rule)
      if (problem !== null) ctx.addIssue({ code: 'custom', path: ['levels'], message: problem })
    })).max(64),
  /** JSON object fields that hold values: `value` takes its metric from the topic, others name their metric. */
  valueFields: z.array(z.string().min(1).max(64)).min(1).max(32),
  /** Larger payloads go to the dead letter. */
  maxPayloadBytes: z.int().min(16).max(16 * 1024 * 1024),
  /** How far ahead of its arrival a reading's time may be (sensor clocks drift); later ones go to the dead letter. */
  maxClockSkewMs: milliseconds(0, 7 * 86_400_000),
  /** Distinct sensor metrics kept at most; readings of new ones past it go to the dead letter. */
  maxSensors: z.int().min(1).max(1_000_000),
  /** QoS 1 (the default) loses nothing; QoS 0 is cheaper and loses what is in flight when anything fails. */
  qos: z.union([z.literal(0), z.literal(1)]),
  batch: z.strictObject({
    maxMessages: z.int().min(1).max(65_535),
    maxDelayMs: milliseconds(1, 10_000)
  }),
  /** Unacknowledged QoS 1 messages the broker may send at once (MQTT 5 Receive Maximum). */
  receiveMaximum: z.int().min(1).max(65_535),
  /** How long the broker keeps our session and queues for us while we are away (MQTT 5 Session Expiry). */
  sessionExpirySec: z.int().min(0).max(0xffffffff),
  keepaliveSec: z.int().min(5).max(3_600),
  /** An MQTT broker inside the agent, for a box with none (aedes). Defaults to on when topics are set and url is not. */
  embeddedBroker: z.strictObject({
    enabled: z.boolean().optional(),
    /** Loopback unless there is a passwordFile: a broker that anyone on the network can reach needs credentials. */
    host: z.string().min(1),
    port: z.int().min(1).max(65_535),
    /** Users and hashed passwords, as `mosquitto_passwd` writes them. Unset: anonymous clients, on loopback only. */
    passwordFile: z.string().min(1).optional(),
    /** The largest MQTT packet a client may send; larger ones close its connection. Defaults to maxPayloadBytes + 64 KiB. */
    maxPacketBytes: z.int().min(1024).max(268_435_460).optional(),
    /** Connections at once; more are closed as they come. */
    maxClients: z.int().min(1).max(100_000),
    /**
     * Connections at once from one address; more are closed as they come. Defaults to 16, or to maxClients on
     * loopback, where every local client (Home Assistant, zigbee2mqtt, bridges) shares one address.
     */
    maxClientsPerAddress: z.int().min(1).max(100_000).optional()
  }),
  /** Where the box publishes its availability and health: <baseTopic>/<name>/… */
  baseTopic: z.string().regex(/^[^#+\0]+$/, 'must be a topic without wildcards').refine((t) => !t.endsWith('/'), 'must not end in "/"'),
  healthIntervalMs: milliseconds(1_000, 3_600_000),
  /** Publish Home Assistant discovery configs for the box. */
  homeAssistant: z.boolean(),
  retention: z.strictObject({
    rawHours: z.number().positive().max(24 * 3650),
    minuteDays: z.number().positive().max(3650),
    hourDays: z.number().positive().max(36500)
  })
})

export const ConfigSchema = z.strictObject({
  name: nameText,
  dataDir: z.string().min(1),
  logLevel: z.enum(LOG_LEVELS),
  listen: z.array(tcpMultiaddr).min(1),
  bootstrap: z.array(bootstrapMultiaddr),
  /** Defaults to `<dataDir>/swarm.key`. */
  swarmKeyFile: z.string().min(1).optional(),
  mdns: z.strictObject({
    enabled: z.boolean(),
    /**
     * How often to ask the LAN who is there. A starting agent asks at once and everyone answers at once, and
     * members lost later are dialled again from the store, so the periodic question is only a backstop: every
     * question draws an answer from every agent, to every agent.
     */
    intervalMs: milliseconds(250, 3_600_000)
  }),
  health: z.strictObject({
    /** How often this agent publishes its health beacon. */
    intervalMs: milliseconds(100, 60_000)
  }),
  gossip: z.strictObject({
    /**
     * How many peers each message is forwarded to (gossipsub's D). 0: every member is connected to every other
     * and gets each message once, first-hand (a LAN). 2–3: some members cannot reach each other directly (NAT,
     * firewalls), so messages travel through others, at the cost of duplicates.
     */
    degree: z.int().min(0).max(12)
  }),
  membership: z.strictObject({
    /** Silence after which a member is pinged: a little over one beacon interval (must exceed health.intervalMs). */
    probeAfterMs: milliseconds(150, 600_000),
    /** How long a ping may take; a member that misses two in a row is dead. */
    probeTimeoutMs: milliseconds(20, 60_000),
    /** Silence after which a member whose box still accepts connections (a wedged or starved agent) is dead. */
    unresponsiveAfterMs: milliseconds(1_000, 3_600_000),
    /** How long dead and left members stay listed before they are forgotten (Serf keeps them 24 h). */
    reapAfterMs: milliseconds(1_000, 30 * 86_400_000),
    /** How often known but unconnected peers are dialled again (and how long one dial may take). */
    redialIntervalMs: milliseconds(250, 600_000),
    /** Members known at most (self and the dead included); a newcomer's beacon past it is refused and counted. */
    maxMembers: z.int().min(2).max(65_536)
  }),
  coordinator: z.strictObject({
    /** Whether this node may be elected coordinator (a weak box can opt out). */
    eligible: z.boolean(),
    /** Higher wins the election before capability is compared (-1000…1000). */
    priority: z.int().min(-1000).max(1000),
    /** How often the coordinator re-evaluates the placement of work, besides on every membership change. */
    evaluateIntervalMs: milliseconds(500, 3_600_000),
    /** A box takes new work only while its projected CPU use stays under this (%); it keeps work until +10. */
    maxCpuPct: z.int().min(10).max(100),
    /** How long the work of a dead member is still placed on others; the work of a member that left, never. */
    orphanAfterMs: milliseconds(0, 7 * 86_400_000)
  }),
  /** Work configured on this node (its cameras and models); the coordinator may place it elsewhere. */
  /**
   * What this box opens for work homed on other boxes (its own work is not checked): source schemes and hosts
   * (`rtsp://`, `rtsp://192.0.2.10`, `lavfi:` for FFmpeg generators that read nothing), and the largest model.
   * Files and devices are never opened for another home; models from the mesh come by id only.
   */
  remoteWork: z.strictObject({
    sources: z.array(remoteSourceEntry).max(16),
    maxModelBytes: z.int().min(0).max(64 * 1024 ** 3)
  }),
  /** A JSON file `{ "<camera id>": { "username": "…", "password": "…" } }`: camera credentials, never sent to the mesh. */
  cameraCredentialsFile: z.string().min(1).optional(),
  work: z.array(WorkItemSchema).max(32).refine((items) => new Set(items.map((w) => w.id)).size === items.length, 'work ids must be unique'),
  models: z.strictObject({
    /**
     * Keep a copy of the models of work elsewhere in the mesh that could move here, so this box can take over a
     * camera whose node died (see runtime/model-standby.ts).
     */
    standby: z.boolean(),
    /**
     * The folder whose model files operators may compile over HTTPS (`noodle models compile` on another machine).
     * Unset: compile over HTTPS is refused. The local socket may compile any regular file.
     */
    importDir: z.string().min(1).optional(),
    /** The largest model file this box compiles, fetches or keeps (bytes). */
    maxModelBytes: z.int().min(1024).max(64 * 1024 ** 3),
    /** A peer sending a model that stays silent this long is cut off (the fetch fails and is counted). */
    fetchIdleTimeoutMs: milliseconds(100, 600_000),
    /** A standby copy that no work in the mesh has named for this long is deleted (compiled models never are). */
    standbyRetainMs: milliseconds(0, 30 * 86_400_000),
    /** Standby copies together, at most: past it, no more are fetched until some are collected. */
    standbyMaxBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER)
  }),
  api: z.strictObject({
    /** Defaults to `<dataDir>/agent.sock`. */
    socketPath: z.string().min(1).optional(),
    /** How long a client (on the socket or over HTTPS) may take to send its headers, then its whole request. */
    headersTimeoutMs: milliseconds(1_000, 600_000),
    requestTimeoutMs: milliseconds(1_000, 3_600_000),
    /**
     * An HTTPS listener for tools on other machines (off by default). Every request on it needs an operator's
     * token (POST /api/v1/identity/login) whose role allows it.
     */
    tcp: z.strictObject({
      host: z.string().min(1).default('0.0.0.0'),
      port: z.int().min(1).max(65_535),
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
      /** Connections open at once; more are closed at once (counted as refused: connections). */
      maxConnections: z.int().min(1).max(65_535).default(256),
      /** Connections open at once from one address; more are closed at once (refused: address_connections). */
      maxConnectionsPerAddress: z.int().min(1).max(65_535).default(16)
    }).optional()
  }).refine((a) => a.headersTimeoutMs <= a.requestTimeoutMs, { path: ['headersTimeoutMs'], message: 'must not exceed api.requestTimeoutMs' }),
  mqtt: MqttSchema
}).refine((c) => c.membership.probeAfterMs > c.health.intervalMs, {
  path: ['membership', 'probeAfterMs'],
  message: 'must be greater than health.intervalMs (a member is pinged only once a beacon is late)'
})

export type Config = z.infer<typeof ConfigSchema>

/** The config with the defaults that depend on the data dir filled in. */
export interface ResolvedConfig extends Config {
  swarmKeyFile: string
  api: Config['api'] & { socketPath: string }
  mqtt: Config['mqtt'] & { clientId: string, embeddedBroker: Config['mqtt']['embeddedBroker'] & { enabled: boolean, maxPacketBytes: number, maxClientsPerAddress: number } }
}

/** Where the data dir lives when nothing says otherwise: the per-user state folder. */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  const stateHome = env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state')
  return join(stateHome, 'noodle')
}

export function defaultConfig (env: NodeJS.ProcessEnv = process.env): Config {
  return {
    name: hostname().split('.')[0] ?? 'noodle',
    dataDir: defaultDataDir(env),
    logLevel: 'info',
    listen: ['/ip4/0.0.0.0/tcp/4001'],
    bootstrap: [],
    mdns: { enabled: true, intervalMs: 60_000 },
    health: { intervalMs: 1_000 },
    gossip: { degree: 0 },
    membership: { probeAfterMs: 1_100, probeTimeoutMs: 250, unresponsiveAfterMs: 30_000, reapAfterMs: 86_400_000, redialIntervalMs: 1_000, maxMembers: DEFAULT_MAX_MEMBERS },
    coordinator: { eligible: true, priority: 0, evaluateIntervalMs: 10_000, maxCpuPct: 80, orphanAfterMs: 600_000 },
    remoteWork: { sources: [...DEFAULT_REMOTE_SOURCES], maxModelBytes: DEFAULT_REMOTE_MAX_MODEL_BYTES },
    work: [],
    models: { standby: true, maxModelBytes: 512 * 1024 ** 2, fetchIdleTimeoutMs: 30_000, standbyRetainMs: 3_600_000, standbyMaxBytes: 2 * 1024 ** 3 },
    api: { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 },
    mqtt: {
      tls: { rejectUnauthorized: true },
      topics: [],
      topicParsing: [],
      valueFields: ['value'],
      maxPayloadBytes: 65_536,
      maxClockSkewMs: 600_000,
      maxSensors: DEFAULT_MAX_SENSORS,
      qos: 1,
      batch: { maxMessages: 1_000, maxDelayMs: 5 },
      receiveMaximum: 2_000,
      sessionExpirySec: 7 * 86_400,
      keepaliveSec: 30,
      embeddedBroker: { host: '127.0.0.1', port: 1883, maxClients: 1_000 },
      baseTopic: 'noodle',
      healthIntervalMs: 60_000,
      homeAssistant: false,
      retention: { rawHours: 48, minuteDays: 30, hourDays: 365 }
    }
  }
}

type ValueKind = 'string' | 'int' | 'boolean' | 'list'

/** Every key that can be set from the environment or a flag, and how its text is read. */
const SETTABLE: Record<string, ValueKind> = {
  name: 'string',
  dataDir: 'string',
  logLevel: 'string',
  listen: 'list',
  bootstrap: 'list',
  swarmKeyFile: 'string',
  'mdns.enabled': 'boolean',
  'mdns.intervalMs': 'int',
  'health.intervalMs': 'int',
  'gossip.degree': 'int',
  'membership.probeAfterMs': 'int',
  'membership.probeTimeoutMs': 'int',
  'membership.unresponsiveAfterMs': 'int',
  'membership.reapAfterMs': 'int',
  'membership.redialIntervalMs': 'int',
  'membership.maxMembers': 'int',
  'coordinator.eligible': 'boolean',
  'coordinator.priority': 'int',
  'coordinator.evaluateIntervalMs': 'int',
  'coordinator.maxCpuPct': 'int',
  'coordinator.orphanAfterMs': 'int',
  'remoteWork.sources': 'list',
  'remoteWork.maxModelBytes': 'int',
  cameraCredentialsFile: 'string',
  'api.socketPath': 'string',
  'api.headersTimeoutMs': 'int',
  'api.requestTimeoutMs': 'int',
  'api.tcp.host': 'string',
  'api.tcp.port': 'int',
  'api.tcp.certFile': 'string',
  'api.tcp.keyFile': 'string',
  'api.tcp.maxConnections': 'int',
  'api.tcp.maxConnectionsPerAddress': 'int',
  'models.standby': 'boolean',
  'models.importDir': 'string',
  'models.maxModelBytes': 'int',
  'models.fetchIdleTimeoutMs': 'int',
  'models.standbyRetainMs': 'int',
  'models.standbyMaxBytes': 'int',
  'mqtt.url': 'string',
  'mqtt.username': 'string',
  'mqtt.passwordFile': 'string',
  'mqtt.clientId': 'string',
  'mqtt.topics': 'list',
  'mqtt.qos': 'int',
  'mqtt.maxSensors': 'int',
  'mqtt.embeddedBroker.enabled': 'boolean',
  'mqtt.embeddedBroker.host': 'string',
  'mqtt.embeddedBroker.port': 'int',
  'mqtt.embeddedBroker.passwordFile': 'string',
  'mqtt.embeddedBroker.maxPacketBytes': 'int',
  'mqtt.embeddedBroker.maxClients': 'int',
  'mqtt.embeddedBroker.maxClientsPerAddress': 'int',
  'mqtt.baseTopic': 'string',
  'mqtt.homeAssistant': 'boolean'
}

export function envVarFor (key: string): string {
  return 'NOODLE_' + key.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

/** Flags of `noodle agent` that set config keys (the rest of the CLI's flags are its own). */
export interface AgentFlags {
  config?: string
  name?: string
  'data-dir'?: string
  'log-level'?: string
  listen?: string[]
  bootstrap?: string[]
  'no-mdns'?: boolean
  'swarm-key'?: string
  'mqtt-url'?: string
  'mqtt-topic'?: string[]
}

/** Flags of `noodle agent` and the keys they set. */
const FLAG_KEYS: Partial<Record<keyof AgentFlags, string>> = {
  name: 'name',
  'data-dir': 'dataDir',
  'log-level': 'logLevel',
  listen: 'listen',
  bootstrap: 'bootstrap',
  'swarm-key': 'swarmKeyFile',
  'mqtt-url': 'mqtt.url',
  'mqtt-topic': 'mqtt.topics'
}

function flagFor (key: string): string {
  return Object.entries(FLAG_KEYS).find(([, k]) => k === key)?.[0] ?? key
}

function parseText (key: string, kind: ValueKind, text: string, source: string): unknown {
  switch (kind) {
    case 'string':
      return text
    case 'list':
      return text.split(',').map((s) => s.trim()).filter((s) => s !== '')
    case 'int':
      if (!/^-?\d+$/.test(text.trim())) {
        throw new ConfigError(key, `must be an integer, got ${JSON.stringify(text)} (from ${source})`)
      }
      return Number(text)
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(text)) return true
      if (/^(0|false|no|off)$/i.test(text)) return false
      throw new ConfigError(key, `must be true or false, got ${JSON.stringify(text)} (from ${source})`)
  }
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function setPath (target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.')
  let node = target
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(node[part])) node[part] = {}
    node = node[part] as Record<string, unknown>
  }
  node[parts.at(-1) as string] = value
}

/** Deep-merges `layer` onto `base`, noting for each leaf key which source set it. Arrays replace. */
function mergeLayer (base: Record<string, unknown>, layer: Record<string, unknown>,
  sourceOfKey: (key: string) => string, sources: Map<string, string>, prefix = ''): void {
  for (const [k, v] of Object.entries(layer)) {
    const path = prefix === '' ? k : `${prefix}.${k}`
    if (isPlainObject(v) && isPlainObject(base[k])) {
      mergeLayer(base[k] as Record<string, unknown>, v, sourceOfKey, sources, path)
    } else {
      base[k] = v
      sources.set(path, sourceOfKey(path))
    }
  }
}

export interface LoadConfigOptions {
  flags?: AgentFlags
  env?: NodeJS.ProcessEnv
}

export function loadConfig ({ flags = {}, env = process.env }: LoadConfigOptions = {}): ResolvedConfig {
  const merged = defaultConfig(env) as unknown as Record<string, unknown>
  const sources = new Map<string, string>()

  const file = flags.config ?? env.NOODLE_CONFIG
  if (file != null && file !== '') {
    mergeLayer(merged, readConfigFile(file), () => file, sources)
  }

  const fromEnv: Record<string, unknown> = {}
  for (const [key, kind] of Object.entries(SETTABLE)) {
    const name = envVarFor(key)
    const text = env[name]
    if (text !== undefined && text !== '') {
      setPath(fromEnv, key, parseText(key, kind, text, name))
    }
  }
  mergeLayer(merged, fromEnv, envVarFor, sources)

  const fromFlags: Record<string, unknown> = {}
  for (const [flag, key] of Object.entries(FLAG_KEYS) as Array<[keyof AgentFlags, string]>) {
    if (flags[flag] !== undefined) setPath(fromFlags, key, flags[flag])
  }
  if (flags['no-mdns'] === true) setPath(fromFlags, 'mdns.enabled', false)
  mergeLayer(merged, fromFlags, (key) => key === 'mdns.enabled' ? '--no-mdns' : `--${flagFor(key)}`, sources)

  const result = ConfigSchema.safeParse(merged)
  if (!result.success) {
    const issue = result.error.issues[0] as z.core.$ZodIssue
    const key = issueKey(issue)
    const source = sourceOf(key, sources)
    const message = issue.code === 'unrecognized_keys' ? 'is not a known setting' : issue.message
    throw new ConfigError(key, `${message}${source != null ? ` (from ${source})` : ''}`)
  }
  const config = result.data
  const dataDir = resolve(config.dataDir)
  const socketPath = resolve(config.api.socketPath ?? join(dataDir, 'agent.sock'))
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    const key = config.api.socketPath != null ? 'api.socketPath' : 'dataDir'
    throw new ConfigError(key, `makes the API socket path ${Buffer.byteLength(socketPath)} bytes long; ` +
      `Unix sockets allow ${MAX_SOCKET_PATH_BYTES}: use a shorter path or set api.socketPath`)
  }
  const brokerEnabled = config.mqtt.embeddedBroker.enabled ?? (config.mqtt.url === undefined && config.mqtt.topics.length > 0)
  const brokerHost = config.mqtt.embeddedBroker.host
  if (brokerEnabled && config.mqtt.embeddedBroker.passwordFile === undefined && !isLoopback(brokerHost)) {
    const source = sourceOf('mqtt.embeddedBroker.host', sources)
    throw new ConfigError('mqtt.embeddedBroker.host', `is ${brokerHost}, which others can reach: a broker off loopback needs ` +
      `mqtt.embeddedBroker.passwordFile (users made with mosquitto_passwd)${source != null ? ` (from ${source})` : ''}`)
  }
  // Work of a member reaped before it is orphaned would be stopped by nobody: its home is no longer listed.
  if (config.coordinator.orphanAfterMs >= config.membership.reapAfterMs) {
    const source = sourceOf('coordinator.orphanAfterMs', sources) ?? sourceOf('membership.reapAfterMs', sources)
    throw new ConfigError('coordinator.orphanAfterMs', `is ${config.coordinator.orphanAfterMs}, but must be less than membership.reapAfterMs ` +
      `(${config.membership.reapAfterMs}): a dead member's work must be stopped before the member is forgotten${source != null ? ` (from ${source})` : ''}`)
  }
  return {
    ...config,
    dataDir,
    swarmKeyFile: resolve(config.swarmKeyFile ?? join(dataDir, 'swarm.key')),
    api: { ...config.api, socketPath },
    models: { ...config.models, ...(config.models.importDir === undefined ? {} : { importDir: resolve(config.models.importDir) }) },
    mqtt: {
      ...config.mqtt,
      clientId: config.mqtt.clientId ?? `noodle-${config.name}`.slice(0, 64),
      embeddedBroker: {
        ...config.mqtt.embeddedBroker,
        enabled: brokerEnabled,
        maxPacketBytes: config.mqtt.embeddedBroker.maxPacketBytes ?? config.mqtt.maxPayloadBytes + 65_536,
        maxClientsPerAddress: config.mqtt.embeddedBroker.maxClientsPerAddress ?? (isLoopback(brokerHost) ? config.mqtt.embeddedBroker.maxClients : 16)
      }
    }
  }
}

/** Whether a listening host is reachable from this box alone. */
function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** Linux caps a Unix socket's path at 107 bytes (108 with the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107

/** The source of a key, or of the nearest key above or below it that a source set (for list items). */
function sourceOf (key: string, sources: Map<string, string>): string | undefined {
  let k = key
  while (k !== '') {
    const source = sources.get(k)
    if (source != null) return source
    const parent = k.replace(/(\.[^.[]*|\[\d+\])$/, '')
    k = parent === k ? '' : parent
  }
  return undefined
}

function readConfigFile (file: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('config', `${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (!isPlainObject(parsed)) {
    throw new ConfigError('config', `${file} must hold a JSON object`)
  }
  return parsed
}
