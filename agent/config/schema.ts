import { hostname } from 'node:os'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { topicRuleProblem } from '../../protocols/sensor-payload.ts'
import { nameText } from '../../common/text.ts'
import { DEFAULT_REMOTE_MAX_MODEL_BYTES, DEFAULT_REMOTE_SOURCES, remoteSourceEntry, WorkItemSchema } from '../../protocols/work.ts'
import { DEFAULT_MAX_MEMBERS } from '../membership/membership.ts'
import { DEFAULT_MAX_SENSORS } from '../ingest/sensor-store.ts'
import { LOG_LEVELS } from '../../common/logger.ts'

/**
 * Every setting, declared once. A leaf's default, description and CLI flag live here; its environment variable,
 * the flags of `noodle agent`, their help and the reference in docs/configuration.md are derived from it
 * (settings.ts, reference.ts). A nested object defaults to `{}` through `.prefault`, so its fields' defaults apply.
 */

/** A flag of `noodle agent` that sets one setting. */
export interface SettingFlag {
  /** Without the dashes: `data-dir`. */
  name: string
  /** The value's placeholder in the help (`DIR`); none: a switch. */
  arg?: string
  /** What a switch sets the setting to (`--no-mdns` sets mdns.enabled to false). */
  sets?: boolean
  /** Its line in `noodle help`. */
  help: string
}

declare module 'zod' {
  interface GlobalMeta {
    /** The environment variable, where it is not the one the naming rule derives (see envVarFor). */
    env?: string
    flag?: SettingFlag
    /** The default in words, where the loader computes it (from the data dir, the node name, other settings). */
    defaultText?: string
  }
}

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
  url: mqttUrl.optional().meta({
    description: 'the broker: `mqtt://host:1883`, `mqtts://host:8883`, `ws://host:9001/mqtt`, `wss://…`. Unset: the embedded broker, if it runs; else no MQTT at all',
    defaultText: 'unset',
    flag: { name: 'mqtt-url', arg: 'URL', help: 'MQTT broker to ingest from: mqtt://, mqtts://, ws:// or wss://' }
  }),
  username: z.string().min(1).max(256).optional().meta({ description: 'the user to connect to the broker as' }),
  passwordFile: z.string().min(1).optional().meta({
    description: 'a file holding the broker password, so that it is in neither the config nor the process list'
  }),
  clientId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1–64 letters, digits, ".", "_" or "-"').optional().meta({
    description: 'keep it stable: the broker keeps our session (and queues for us) under it across restarts',
    defaultText: '`noodle-<name>`'
  }),
  tls: z.strictObject({
    caFile: z.string().min(1).optional().meta({ description: 'for `mqtts://`: a PEM file of the CA that signed the broker\'s certificate', defaultText: 'the system CAs' }),
    certFile: z.string().min(1).optional().meta({ description: 'for `mqtts://`: a PEM file of our certificate, when the broker wants one' }),
    keyFile: z.string().min(1).optional().meta({ description: 'for `mqtts://`: a PEM file of our certificate\'s key' }),
    rejectUnauthorized: z.boolean().default(true).meta({ description: 'refuse a broker whose certificate does not verify' })
  }).prefault({}),
  topics: z.array(topicFilter).max(64).default(() => []).meta({
    description: 'topic filters to ingest into the store; none: nothing is ingested (the box still publishes its presence)',
    flag: { name: 'mqtt-topic', arg: 'FILTER', help: 'MQTT topic filter to ingest, repeatable (without --mqtt-url: an embedded broker)' }
  }),
  topicParsing: z.array(z.strictObject({ topic: topicFilter, levels: z.string().min(1).max(1024) })
    .superRefine((rule, ctx) => {
      const problem = topicRuleProblem(rule)
      if (problem !== null) ctx.addIssue({ code: 'custom', path: ['levels'], message: problem })
    })).max(64).default(() => []).meta({
    description: 'how topics name sensors and metrics, as Telegraf\'s `topic_parsing`: `[{ "topic": "sensors/+/+", "levels": "_/sensor/metric" }]`; the first rule that matches applies'
  }),
  valueFields: z.array(z.string().min(1).max(64)).min(1).max(32).default(() => ['value']).meta({
    description: 'JSON object fields that hold values: `value` takes its metric from the topic, others name their metric'
  }),
  maxPayloadBytes: z.int().min(16).max(16 * 1024 * 1024).default(65_536).meta({ description: 'larger payloads go to the dead letter (`oversize`)' }),
  maxClockSkewMs: milliseconds(0, 7 * 86_400_000).default(600_000).meta({
    description: 'how far past its arrival a reading\'s time may be (sensor clocks drift); later ones go to the dead letter (`time-in-future`)'
  }),
  maxSensors: z.int().min(1).max(1_000_000).default(DEFAULT_MAX_SENSORS).meta({
    description: 'distinct sensor metrics the store keeps; readings of new ones past it go to the dead letter (`too-many-sensors`)'
  }),
  qos: z.union([z.literal(0), z.literal(1)]).default(1).meta({
    description: 'QoS 1 loses nothing; QoS 0 is cheaper and loses what is in flight when anything fails'
  }),
  batch: z.strictObject({
    maxMessages: z.int().min(1).max(65_535).default(1_000).meta({ description: 'messages stored in one transaction at most' }),
    maxDelayMs: milliseconds(1, 10_000).default(5).meta({ description: 'how long a batch waits for more after its first message' })
  }).prefault({}),
  receiveMaximum: z.int().min(1).max(65_535).default(2_000).meta({
    description: 'unacknowledged QoS 1 messages the broker may send at once (MQTT 5 Receive Maximum)'
  }),
  sessionExpirySec: z.int().min(0).max(0xffffffff).default(7 * 86_400).meta({
    description: 'how long the broker keeps our session and queues for us while we are away (MQTT 5 Session Expiry)'
  }),
  keepaliveSec: z.int().min(5).max(3_600).default(30).meta({ description: 'the MQTT keepalive of our session' }),
  embeddedBroker: z.strictObject({
    enabled: z.boolean().optional().meta({
      description: 'run an MQTT broker inside the agent (aedes, MQTT 3.1.1), for a box with none',
      defaultText: 'on when `mqtt.topics` are set and `mqtt.url` is not'
    }),
    host: z.string().min(1).default('127.0.0.1').meta({
      description: 'where the embedded broker listens; a host other than loopback needs a `passwordFile` (a broker anyone on the network can reach needs credentials)'
    }),
    port: z.int().min(1).max(65_535).default(1883).meta({ description: 'the embedded broker\'s TCP port' }),
    passwordFile: z.string().min(1).optional().meta({
      description: 'users and hashed passwords, as `mosquitto_passwd` writes them; unset: anonymous clients, on loopback only'
    }),
    maxPacketBytes: z.int().min(1024).max(268_435_460).optional().meta({
      description: 'the largest MQTT packet a client may send; larger ones close its connection',
      defaultText: '`mqtt.maxPayloadBytes` + 65536'
    }),
    maxClients: z.int().min(1).max(100_000).default(1_000).meta({
      description: 'connections at once (the agent\'s own not counted); more are closed as they come'
    }),
    maxClientsPerAddress: z.int().min(1).max(100_000).optional().meta({
      description: 'connections at once from one address; more are closed as they come',
      defaultText: '`16`; on loopback, where every local client (Home Assistant, zigbee2mqtt, bridges) shares one address, `maxClients`'
    })
  }).prefault({}),
  baseTopic: z.string().regex(/^[^#+\0]+$/, 'must be a topic without wildcards').refine((t) => !t.endsWith('/'), 'must not end in "/"')
    .default('noodle').meta({ description: 'where the box publishes its availability and health: `<baseTopic>/<name>/…`' }),
  healthIntervalMs: milliseconds(1_000, 3_600_000).default(60_000).meta({ description: 'how often the box publishes its health to `<baseTopic>/<name>/health`' }),
  homeAssistant: z.boolean().default(false).meta({ description: 'publish Home Assistant discovery configs for the box' }),
  retention: z.strictObject({
    rawHours: z.number().positive().max(24 * 3650).default(48).meta({ description: 'how long raw readings are kept' }),
    minuteDays: z.number().positive().max(3650).default(30).meta({ description: 'how long minute rollups (count, min, max, mean, last) are kept' }),
    hourDays: z.number().positive().max(36500).default(365).meta({ description: 'how long hour rollups are kept' })
  }).prefault({})
})

export const ConfigSchema = z.strictObject({
  name: nameText.default(() => hostname().split('.')[0] ?? 'noodle').meta({
    description: 'this node\'s name in the mesh: 1–63 of `A-Z a-z 0-9 . _ -`',
    defaultText: 'the hostname',
    flag: { name: 'name', arg: 'NAME', help: 'node name (default: hostname)' }
  }),
  dataDir: z.string().min(1).meta({
    description: 'identity, swarm key, store, API socket',
    defaultText: '`$XDG_STATE_HOME/noodle` (`~/.local/state/noodle`)',
    flag: { name: 'data-dir', arg: 'DIR', help: 'state folder (default: $NOODLE_DATA_DIR, else ~/.local/state/noodle)' }
  }),
  logLevel: z.enum(LOG_LEVELS).default('info').meta({
    description: 'how much the agent logs',
    flag: { name: 'log-level', arg: 'LEVEL', help: 'fatal|error|warn|info|debug|trace|silent (default info)' }
  }),
  listen: z.array(tcpMultiaddr).min(1).default(() => ['/ip4/0.0.0.0/tcp/4001']).meta({
    description: 'TCP listen multiaddrs',
    flag: { name: 'listen', arg: 'MULTIADDR', help: 'listen address, repeatable (default /ip4/0.0.0.0/tcp/4001)' }
  }),
  bootstrap: z.array(bootstrapMultiaddr).default(() => []).meta({
    description: 'members to join through: `/ip4/…/tcp/…/p2p/<peer id>`',
    flag: { name: 'bootstrap', arg: 'MULTIADDR', help: 'a peer to join through, /ip4/…/tcp/…/p2p/<peer id>, repeatable' }
  }),
  swarmKeyFile: z.string().min(1).optional().meta({
    description: 'the mesh\'s pre-shared key',
    defaultText: '`<dataDir>/swarm.key`',
    flag: { name: 'swarm-key', arg: 'FILE', help: 'the mesh\'s pre-shared key (default DIR/swarm.key)' }
  }),
  mdns: z.strictObject({
    enabled: z.boolean().default(true).meta({
      description: 'find peers on the LAN by mDNS (service `_noodle._udp.local`)',
      flag: { name: 'no-mdns', sets: false, help: 'do not discover peers on the LAN with mDNS' }
    }),
    // Members lost later are dialled again from the store, so the periodic question is only a backstop: every
    // question draws an answer from every agent, to every agent.
    intervalMs: milliseconds(250, 3_600_000).default(60_000).meta({
      description: 'how often to ask the LAN who is there again; a starting agent asks at once and gets answers at once'
    })
  }).prefault({}),
  health: z.strictObject({
    intervalMs: milliseconds(100, 60_000).default(1_000).meta({
      description: 'how often this node publishes its health pulse in a small mesh (the figures that change; its record goes only when it changed or is asked for); in a larger one, `intervalPerMemberMs` per live member where that is longer'
    }),
    intervalPerMemberMs: z.int().min(0).max(60_000).default(300).meta({
      description: 'the beacon interval grows by this per live member (this node included) past `intervalMs`, so the pulses each member sends and receives per second stay near-constant as the mesh grows (16 members: 4.8 s; grown to 30 s at most); `0`: always `intervalMs`. Liveness comes from pings between pulses (one way per pair), so detection is as fast'
    })
  }).prefault({}),
  gossip: z.strictObject({
    degree: z.int().min(0).max(12).default(0).meta({
      description: 'peers each gossip message is forwarded to (gossipsub\'s D). `0`: every member connects to every other and gets each message once, first-hand (a LAN). Raise to 2–3 when some members cannot reach each other directly (NAT, firewalls), at the cost of duplicates'
    })
  }).prefault({}),
  mesh: z.strictObject({
    connections: z.int().min(0).max(64).default(0).meta({
      description: 'member connections each box keeps. `0`: a full mesh, every member connected to every other (a LAN of up to a few dozen boxes). `K` > 0: a partial mesh for larger sites: the dialer connects to at most K members (others may connect to it, up to K + 2 in all), and messages reach the rest through gossip, so `gossip.degree` must be 1 to K (see [Scale](scale.md))'
    })
  }).prefault({}),
  membership: z.strictObject({
    probeAfterMs: milliseconds(150, 600_000).default(1_100).meta({
      description: 'silence (no pulse, no answered ping) after which a member is pinged: a little over `health.intervalMs` (it must exceed it). Where the mesh is large enough that members pulse less often than this, they are pinged between pulses, so a cut is found as fast at any size'
    }),
    probeTimeoutMs: milliseconds(20, 60_000).default(250).meta({
      description: 'how long a probe may take; two unanswered in a row make a member `dead`'
    }),
    unresponsiveAfterMs: milliseconds(1_000, 3_600_000).default(30_000).meta({
      description: 'silence after which a member whose box still accepts connections (a wedged or starved agent) is `dead`'
    }),
    reapAfterMs: milliseconds(1_000, 30 * 86_400_000).default(86_400_000).meta({
      description: 'how long `dead` and `left` members stay listed before they are forgotten (Serf keeps them 24 h)'
    }),
    redialIntervalMs: milliseconds(250, 600_000).default(1_000).meta({
      description: 'the longest wait between dials to a known peer we lost (and the longest one dial may take, but 5 s once the port answered a knock)'
    }),
    maxMembers: z.int().min(2).max(65_536).default(DEFAULT_MAX_MEMBERS).meta({
      description: 'members known at most, this box and the `dead` and `left` included; a newcomer\'s beacon past it is refused (`too-many-members`)'
    })
  }).prefault({}),
  coordinator: z.strictObject({
    eligible: z.boolean().default(true).meta({ description: 'whether this node may be elected coordinator (a weak box can opt out)' }),
    priority: z.int().min(-1000).max(1000).default(0).meta({ description: 'higher wins the election before capability is compared' }),
    evaluateIntervalMs: milliseconds(500, 3_600_000).default(10_000).meta({
      description: 'how often the coordinator re-evaluates placement, besides on every membership change'
    }),
    maxCpuPct: z.int().min(10).max(100).default(80).meta({
      description: 'a box takes new work only while its projected CPU use stays under this (%); it keeps work until this +10'
    }),
    orphanAfterMs: milliseconds(0, 7 * 86_400_000).default(600_000).meta({
      description: 'how long the work of a `dead` member is still placed on other boxes; then it is stopped where it runs. The work of a member that `left` is stopped at once. Must be less than `membership.reapAfterMs`'
    })
  }).prefault({}),
  // What this box opens for work homed on other boxes (its own work is not checked). Files and devices are never
  // opened for another home; models from the mesh come by id only.
  remoteWork: z.strictObject({
    sources: z.array(remoteSourceEntry).max(16).default(() => [...DEFAULT_REMOTE_SOURCES]).meta({
      description: 'what this box opens for work homed on other boxes: source schemes and hosts (`rtsp://`, `rtsp://192.0.2.10`, `lavfi:` for FFmpeg generators that read nothing); a scheme alone never admits loopback or link-local hosts (see [Work from other boxes](work.md#work-from-other-boxes))'
    }),
    maxModelBytes: z.int().min(0).max(64 * 1024 ** 3).default(DEFAULT_REMOTE_MAX_MODEL_BYTES).meta({
      description: 'the largest model this box runs for work homed elsewhere'
    })
  }).prefault({}),
  cameraCredentialsFile: z.string().min(1).optional().meta({
    description: 'a JSON file `{ "<camera id>": { "host": "192.0.2.10", "port": 554, "username": "…", "password": "…" } }`: this box\'s camera credentials and the camera they are for (`host`: a name or address, IPv6 in brackets; `port` optional: without it, any port on that host), read at start (an error names the camera key, also when a camera configured here names another host), sent only to that host, never to the mesh'
  }),
  work: z.array(WorkItemSchema).max(32).refine((items) => new Set(items.map((w) => w.id)).size === items.length, 'work ids must be unique')
    .default(() => []).meta({ description: 'work configured on this node (its cameras and models); the coordinator may place it elsewhere (see [Coordinator and work](work.md))' }),
  events: z.strictObject({
    retentionDays: z.int().min(1).max(3650).default(30).meta({
      description: 'how many days the camera events this box keeps (its own and those other members announced) are kept (see [Cameras](cameras.md#events)); a snapshot goes with its event'
    }),
    snapshotMaxBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional().meta({
      description: 'the event snapshots (`<dataDir>/snapshots`) together, at most: the oldest are deleted first; 0 takes none. Unset: 5 % of the data dir\'s filesystem at start, at most 2 GiB (see [Cameras](cameras.md#snapshots))'
    })
  }).prefault({}),
  models: z.strictObject({
    standby: z.boolean().default(true).meta({
      description: 'keep a copy of the models of work elsewhere in the mesh that could move here, so this box can take over a camera whose node died (see [Cameras](cameras.md))'
    }),
    importDir: z.string().min(1).optional().meta({
      description: 'the folder whose model files operators may compile over HTTPS; unset, `compile` over HTTPS is refused (403 `ERR_IMPORT_FORBIDDEN`). The local socket compiles any regular file'
    }),
    maxModelBytes: z.int().min(1024).max(64 * 1024 ** 3).default(512 * 1024 ** 2).meta({
      description: 'the largest model file this box compiles, fetches or keeps (413 `ERR_MODEL_TOO_LARGE` for `compile`; a peer offering more is refused before a byte is written, see [ONNX models](models.md))'
    }),
    fetchIdleTimeoutMs: milliseconds(100, 600_000).default(30_000).meta({
      description: 'a peer sending a model that stays silent this long is cut off (the fetch fails, counted as `stalled`)'
    }),
    standbyRetainMs: milliseconds(0, 30 * 86_400_000).default(3_600_000).meta({
      description: 'a standby copy that no member\'s work has named for this long is deleted; models an operator compiled or fetched never are'
    }),
    standbyMaxBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).default(2 * 1024 ** 3).meta({
      description: 'standby copies together, at most; past it no more are fetched until some are collected (members\' work cannot fill the disk)'
    })
  }).prefault({}),
  api: z.strictObject({
    socketPath: z.string().min(1).optional().meta({
      description: 'the control API\'s Unix socket (at most 107 bytes long)',
      defaultText: '`<dataDir>/agent.sock`'
    }),
    headersTimeoutMs: milliseconds(1_000, 600_000).default(10_000).meta({
      description: 'how long a client, on the socket or over HTTPS, may take to send its headers before the agent answers 408 and closes the connection (at most `api.requestTimeoutMs`)'
    }),
    requestTimeoutMs: milliseconds(1_000, 3_600_000).default(30_000).meta({
      description: 'how long a client, on the socket or over HTTPS, may take to send its whole request before the agent answers 408 and closes the connection'
    }),
    // Off unless set. Every request on it needs an operator's token (POST /api/v1/identity/login) whose role allows it.
    tcp: z.strictObject({
      host: z.string().min(1).default('0.0.0.0').meta({ description: 'where the HTTPS listener for remote tools listens (it is on when `api.tcp.port` is set)' }),
      port: z.int().min(1).max(65_535).meta({
        description: 'an HTTPS listener for remote tools, on this port: every request needs an operator\'s token (see [Operators](operators.md)); needs `api.tcp.certFile` and `api.tcp.keyFile`',
        defaultText: 'off'
      }),
      certFile: z.string().min(1).meta({ description: 'the HTTPS listener\'s certificate (PEM)', defaultText: 'none (needed with `api.tcp.port`)' }),
      keyFile: z.string().min(1).meta({ description: 'the HTTPS listener\'s key (PEM)', defaultText: 'none (needed with `api.tcp.port`)' }),
      maxConnections: z.int().min(1).max(65_535).default(256).meta({
        description: 'connections open at once on the HTTPS listener; more are closed at once (counted as refused: `connections`)'
      }),
      maxConnectionsPerAddress: z.int().min(1).max(65_535).default(16).meta({
        description: 'connections open at once from one remote address; more are closed before their TLS handshake (refused: `address_connections`)'
      })
    }).optional()
  }).refine((a) => a.headersTimeoutMs <= a.requestTimeoutMs, { path: ['headersTimeoutMs'], message: 'must not exceed api.requestTimeoutMs' })
    .prefault({}),
  ui: z.strictObject({
    shareViews: z.boolean().default(true).meta({
      description: 'answer other members\' requests for this box\'s data (camera frames and figures, event snapshots, sensors, dead letter, models, health history), so that the web page on any box shows this one; off, they get 403 `ERR_VIEWS_NOT_SHARED` and this box\'s cameras show no frame elsewhere (see [The web page](ui.md))'
    }),
    http: z.strictObject({
      port: z.int().min(1).max(65_535).meta({
        description: 'the web page and the API over plain HTTP, on 127.0.0.1 only (reach it through an SSH tunnel), for a box without certificates; a session is still required (see [The web page](ui.md))',
        defaultText: 'off'
      })
    }).optional()
  }).prefault({}),
  mqtt: MqttSchema.prefault({})
}).refine((c) => c.membership.probeAfterMs > c.health.intervalMs, {
  path: ['membership', 'probeAfterMs'],
  message: 'must be greater than health.intervalMs (a member is pinged only once a beacon is late)'
}).refine((c) => c.mesh.connections === 0 || (c.gossip.degree >= 1 && c.gossip.degree <= c.mesh.connections), {
  path: ['gossip', 'degree'],
  message: 'must be 1 to mesh.connections when mesh.connections is set (in a partial mesh, messages reach most members only by being forwarded)'
})

export type Config = z.infer<typeof ConfigSchema>
