import { readFileSync } from 'node:fs'
import { PayloadParser } from '../protocols/sensor-payload.ts'
import type { ResolvedConfig } from './config.ts'
import { ConfigError } from './errors.ts'
import { BROKER_DROPPED_TOPIC, Ingest } from './ingest.ts'
import type { Component } from './lifecycle.ts'
import type { Logger } from './logger.ts'
import { EmbeddedBroker } from './mqtt-broker.ts'
import { MqttPresence, presenceTopics } from './mqtt-presence.ts'
import { maxPacketBytesFor, MqttSession } from './mqtt-session.ts'
import type { SessionTls } from './mqtt-session.ts'
import type { SensorStore } from './sensor-store.ts'
import { VERSION } from './version.ts'

/** The MQTT side of an agent: what runs, in start order, and the ingest when topics are configured. */
export interface MqttParts {
  components: Array<readonly [string, Component]>
  ingest: Ingest | null
  session: MqttSession | null
}

function readConfigured (key: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined
  try {
    return readFileSync(file)
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as Error).message}`)
  }
}

/**
 * Builds the MQTT components the config asks for: the embedded broker, one session to the broker, the ingest
 * (when there are topics) and the box's presence. No broker at all (no url, no embedded one): nothing.
 */
export function mqttParts ({ config, sensors, log, describe }: {
  config: ResolvedConfig
  sensors: SensorStore
  log: Logger
  /** The health figures the box publishes on MQTT. */
  describe: () => Record<string, unknown>
}): MqttParts {
  const m = config.mqtt
  const broker = m.embeddedBroker.enabled ? new EmbeddedBroker({ host: m.embeddedBroker.host, port: m.embeddedBroker.port, log }) : null
  const url = m.url ?? broker?.url
  if (url === undefined) return { components: [], ingest: null, session: null }
  const tls: SessionTls = {
    ca: readConfigured('mqtt.tls.caFile', m.tls.caFile),
    cert: readConfigured('mqtt.tls.certFile', m.tls.certFile),
    key: readConfigured('mqtt.tls.keyFile', m.tls.keyFile),
    rejectUnauthorized: m.tls.rejectUnauthorized
  }
  const password = readConfigured('mqtt.passwordFile', m.passwordFile)?.toString('utf8').trim()
  const subscriptions = m.topics.map((topic) => ({ topic, qos: m.qos }))
  // Mosquitto reports under $SYS the messages it dropped for slow subscribers: ours to show as drops.
  if (subscriptions.length > 0) subscriptions.push({ topic: BROKER_DROPPED_TOPIC, qos: 0 })
  const session = new MqttSession({
    log,
    options: {
      url,
      clientId: m.clientId,
      username: m.username,
      password,
      tls,
      keepaliveS: m.keepaliveSec,
      sessionExpiryS: m.sessionExpirySec,
      receiveMaximum: m.receiveMaximum,
      maxPacketBytes: maxPacketBytesFor(m.maxPayloadBytes),
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
    describe
  })
  // Stopped in reverse: presence says offline, ingest commits and acknowledges its last batch, then the session
  // disconnects, then the broker goes.
  const components: Array<readonly [string, Component]> = []
  if (broker !== null) components.push(['mqtt broker', broker])
  components.push(['mqtt', session])
  if (ingest !== null) components.push(['ingest', ingest])
  components.push(['mqtt presence', presence])
  return { components, ingest, session }
}
