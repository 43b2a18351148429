import type { Logger } from '../../common/logger.ts'
import type { MqttSession } from './mqtt-session.ts'

/**
 * The box's own state on MQTT, in the conventions Home Assistant, Zigbee2MQTT and Frigate users know:
 *
 * - `<base>/<name>/availability`: `online` (retained) once connected; `offline` (retained) on a clean stop, and
 *   as the session's Last Will when the agent dies.
 * - `<base>/<name>/health`: the health figures as JSON, every `intervalMs`.
 * - with `homeAssistant`, discovery configs under `homeassistant/sensor/noodle_<name>/…/config` (retained), so
 *   the box shows up as a device with its CPU, memory, mesh size and ingest rate.
 */

export interface PresenceTopics {
  availability: string
  health: string
}

export function presenceTopics (baseTopic: string, name: string): PresenceTopics {
  return { availability: `${baseTopic}/${name}/availability`, health: `${baseTopic}/${name}/health` }
}

/** The Home Assistant sensors announced, as [object id, friendly name, value path in the health JSON, unit]. */
const HA_SENSORS: ReadonlyArray<readonly [string, string, string, string | null]> = [
  ['cpu', 'CPU', 'cpuPct', '%'],
  ['memory', 'Memory used', 'memUsedPct', '%'],
  ['members', 'Mesh members', 'members', null],
  ['ingest_rate', 'Ingest rate', 'ingest.perS', 'msg/s']
]

export class MqttPresence {
  private readonly session: MqttSession
  private readonly log: Logger
  private readonly name: string
  private readonly version: string
  private readonly topics: PresenceTopics
  private readonly intervalMs: number
  private readonly homeAssistant: boolean
  private readonly describe: () => Record<string, unknown>
  private timer: NodeJS.Timeout | undefined

  constructor (components: {
    session: MqttSession
    log: Logger
    name: string
    version: string
    baseTopic: string
    intervalMs: number
    homeAssistant: boolean
    /** The health figures to publish (JSON-serialisable). */
    describe: () => Record<string, unknown>
  }) {
    this.session = components.session
    this.log = components.log
    this.name = components.name
    this.version = components.version
    this.topics = presenceTopics(components.baseTopic, components.name)
    this.intervalMs = components.intervalMs
    this.homeAssistant = components.homeAssistant
    this.describe = components.describe
  }

  private readonly onConnected = (): void => {
    this.session.publish(this.topics.availability, 'online', { retain: true })
    if (this.homeAssistant) this.announce()
    this.publishHealth()
  }

  start (): void {
    this.session.on('connected', this.onConnected)
    if (this.session.connected) this.onConnected()
    this.timer = setInterval(() => { this.publishHealth() }, this.intervalMs).unref()
  }

  stop (): void {
    this.session.off('connected', this.onConnected)
    clearInterval(this.timer)
    this.session.publish(this.topics.availability, 'offline', { retain: true })
  }

  publishHealth (): void {
    let figures: Record<string, unknown>
    try {
      figures = this.describe()
    } catch (err) {
      this.log.warn({ err }, 'mqtt: could not gather health to publish')
      return
    }
    this.session.publish(this.topics.health, JSON.stringify(figures))
  }

  private announce (): void {
    const id = `noodle_${this.name.replace(/[^A-Za-z0-9_-]/g, '_')}`
    const device = { identifiers: [id], name: `Noodle ${this.name}`, manufacturer: 'Noodle', sw_version: this.version }
    for (const [object, friendly, path, unit] of HA_SENSORS) {
      const config: Record<string, unknown> = {
        name: friendly,
        unique_id: `${id}_${object}`,
        state_topic: this.topics.health,
        value_template: `{{ value_json.${path} }}`,
        availability_topic: this.topics.availability,
        device
      }
      if (unit !== null) config.unit_of_measurement = unit
      this.session.publish(`homeassistant/sensor/${id}/${object}/config`, JSON.stringify(config), { retain: true })
    }
  }
}
