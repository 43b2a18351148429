import { randomBytes } from 'node:crypto'
import { readSmallFile } from '../../common/files.ts'
import { PayloadParser } from '../../protocols/sensor-payload.ts'
import type { ResolvedConfig } from '../config/config.ts'
import { ConfigError } from '../../common/errors.ts'
import { BROKER_DROPPED_TOPIC, Ingest } from './ingest.ts'
import type { Component } from '../../common/component.ts'
import type { Logger } from '../../common/logger.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { EmbeddedBroker } from './mqtt-broker.ts'
import type { AgentCredentials } from './mqtt-broker.ts'
import { PasswordFile } from './mqtt-passwords.ts'
import { MqttPresence, presenceTopics } from './mqtt-presence.ts'
import { maxPacketBytesFor, MqttSession } from './mqtt-session.ts'
import type { SessionTls } from './mqtt-session.ts'
import type { SensorStore } from './sensor-store.ts'
import { VERSION } from '../../common/version.ts'

/** The MQTT side of an agent: what runs, in start order, and the ingest when topics are configured. */
export interface MqttParts {
  components: Array<readonly [string, Component]>
  ingest: Ingest | null
  session: MqttSession | null
  broker: EmbeddedBroker | null
}

function readConfigured (key: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined
  try {
    return readSmallFile(file)
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as Error).message}`)
  }
}

/**
 * Builds the MQTT components the config asks for: the embedded broker, one session to the broker, the ingest
 * (when there are topics) and the box's presence. No broker at all (no url, no embedded one): nothing.
 */
export function mqttParts ({ config, sensors, log, metrics, describe, disk }: {
  config: ResolvedConfig
  sensors: SensorStore
  log: Logger
  /** Told of failed ingest commits (a full disk). */
  disk?: { observe: (err: unknown) => boolean }
  /** Where the embedded broker counts its refusals. */
  metrics: MetricsStore
  /** The health figures the box publishes on MQTT, given the ingest built here (null when nothing is ingested). */
  describe: (ingest: Ingest | null) => Record<string, unknown>
}): MqttParts {
  const m = config.mqtt
  // The agent's own client proves itself to its embedded broker with a secret made at each start, which no
  // operator or sensor ever sees.
  const agent: AgentCredentials = { clientId: m.clientId, username: 'noodle-agent', password: randomBytes(32).toString('base64url') }
  const broker = m.embeddedBroker.enabled ? embeddedBroker(config, agent, log, metrics) : null
  const url = m.url ?? broker?.url
  if (url === undefined) return { components: [], ingest: null, session: null, broker }
  // Our own broker, also when the url names it: then the session proves itself as the agent.
  const own = broker !== null && (m.url === undefined || m.url === broker.url)
  const tls: SessionTls = {
    ca: readConfigured('mqtt.tls.caFile', m.tls.caFile),
    cert: readConfigured('mqtt.tls.certFile', m.tls.certFile),
    key: readConfigured('mqtt.tls.keyFile', m.tls.keyFile),
    rejectUnauthorized: m.tls.rejectUnauthorized
  }
  const password = own ? agent.password : readConfigured('mqtt.passwordFile', m.passwordFile)?.toString('utf8').trim()
  const subscriptions = m.topics.map((topic) => ({ topic, qos: m.qos }))
  // Mosquitto reports under $SYS the messages it dropped for slow subscribers: ours to show as drops.
  if (subscriptions.length > 0) subscriptions.push({ topic: BROKER_DROPPED_TOPIC, qos: 0 })
  const session = new MqttSession({
    log,
    metrics,
    options: {
      url,
      // Our own broker is reached inside the process: no TCP slot to compete for.
      local: own ? () => broker.connectLocal() : undefined,
      clientId: m.clientId,
      username: own ? agent.username : m.username,
      password,
      tls,
      keepaliveS: m.keepaliveSec,
      sessionExpiryS: m.sessionExpirySec,
      receiveMaximum: m.receiveMaximum,
      // At least what the embedded broker lets in: a message it takes but we refused would be re-sent forever.
      maxPacketBytes: Math.max(maxPacketBytesFor(m.maxPayloadBytes), m.embeddedBroker.maxPacketBytes),
      subscriptions,
      will: { topic: presenceTopics(m.baseTopic, config.name).availability, payload: 'offline', retain: true, qos: 1 }
    }
  })
  const ingest = m.topics.length === 0
    ? null
    : new Ingest({
      session,
      store: sensors,
      log,
      limits: m.batch,
      topics: m.topics,
      disk,
      parser: new PayloadParser({ valueFields: m.valueFields, maxPayloadBytes: m.maxPayloadBytes, topicRules: m.topicParsing, maxClockSkewMs: m.maxClockSkewMs })
    })
  const presence = new MqttPresence({
    session,
    log,
    name: config.name,
    version: VERSION,
    baseTopic: m.baseTopic,
    intervalMs: m.healthIntervalMs,
    homeAssistant: m.homeAssistant,
    describe: () => describe(ingest)
  })
  // Stopped in reverse: presence says offline, ingest commits and acknowledges its last batch, then the session
  // disconnects, then the broker goes.
  const components: Array<readonly [string, Component]> = []
  if (broker !== null) components.push(['mqtt broker', broker])
  components.push(['mqtt', session])
  if (ingest !== null) components.push(['ingest', ingest])
  components.push(['mqtt presence', presence])
  return { components, ingest, session, broker }
}

function embeddedBroker (config: ResolvedConfig, agent: AgentCredentials, log: Logger, metrics: MetricsStore): EmbeddedBroker {
  const m = config.mqtt
  const b = m.embeddedBroker
  const passwordsKey = 'mqtt.embeddedBroker.passwordFile'
  return new EmbeddedBroker({
    host: b.host,
    port: b.port,
    log,
    metrics,
    passwords: b.passwordFile === undefined ? null : new PasswordFile({ file: b.passwordFile, key: passwordsKey, log }),
    policy: {
      agent,
      publishFilters: m.topics,
      agentSubtrees: [m.baseTopic, 'homeassistant'],
      // What the box publishes for others: its availability, health and camera results, and Home Assistant's
      // discovery configs.
      readableSubtrees: [`${m.baseTopic}/${config.name}`, 'homeassistant'],
      maxPacketBytes: b.maxPacketBytes,
      maxClients: b.maxClients,
      maxClientsPerAddress: b.maxClientsPerAddress
    }
  })
}
