import mqtt from 'mqtt'
import type { IClientOptions, MqttClient, Packet } from 'mqtt'
import type { EmbeddedBrokerStats } from '../../agent/ingest/mqtt-broker.ts'
import { apiGet } from '../../agent/cli/client.ts'
import { commandExists } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'

/** Clients of an agent's embedded broker, for the tests that attack it. */

export const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd'
export const skip = commandExists(MOSQUITTO_PASSWD) ? false : 'mosquitto_passwd is not installed (apt install mosquitto)'

/** The embedded broker's figures, from GET /api/v1/ingest (the tests run one). */
export const brokerStats = async (a: AgentProcess): Promise<EmbeddedBrokerStats> =>
  (await apiGet<{ embeddedBroker: EmbeddedBrokerStats }>(a.socketPath, '/api/v1/ingest')).embeddedBroker

/** Connects with MQTT 3.1.1 (aedes speaks no other); resolves the client, or the CONNACK's refusal as text. */
export async function connect (port: number, options: IClientOptions): Promise<MqttClient | string> {
  try {
    return await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
  } catch (err) {
    return `refused ${(err as { code?: number }).code}`
  }
}

export async function connected (port: number, options: IClientOptions): Promise<MqttClient> {
  const client = await connect(port, options)
  if (typeof client === 'string') throw new Error(`could not connect: ${client}`)
  return client
}

/** The CONNACK a connection gets (then it is closed): its return code and whether a session was kept. */
export async function connack (port: number, options: IClientOptions): Promise<{ returnCode?: number, sessionPresent: boolean }> {
  return await new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options })
    client.once('connect', (packet) => { client.end(true); resolve({ returnCode: packet.returnCode, sessionPresent: packet.sessionPresent }) })
    client.once('error', (err) => { client.end(true); reject(err) })
  })
}

/** Whether the connection closes within `ms` (after `action`). */
export async function closedWithin (client: MqttClient, ms: number, action: () => void = () => {}): Promise<'closed' | 'open'> {
  const closed = new Promise<'closed'>((resolve) => { client.once('close', () => { resolve('closed') }) })
  action()
  return await Promise.race([closed, new Promise<'open'>((resolve) => setTimeout(() => { resolve('open') }, ms))])
}

/** The SUBACK's codes for `filters`: the QoS granted, or 128 for a refusal. */
export async function subackCodes (client: MqttClient, filters: string[]): Promise<number[]> {
  const suback = new Promise<number[]>((resolve) => {
    const onPacket = (packet: Packet): void => {
      if (packet.cmd !== 'suback') return
      client.off('packetreceive', onPacket)
      resolve(packet.granted as number[])
    }
    client.on('packetreceive', onPacket)
  })
  client.subscribe(filters, () => {}) // MQTT.js calls a refusal an error; the codes are what is checked
  return await suback
}
