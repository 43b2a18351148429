import { join } from 'node:path'
import mqtt from 'mqtt'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { DeadLetterView } from '../../agent/ingest/sensor-store.ts'
import { ingest, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import type { AgentProcess } from '../helpers/agents.ts'
import { freePort } from '../helpers/mosquitto.ts'

/**
 * A publisher of the embedded broker attacks the sensor store of a real agent: a SenML base name that names
 * another topic's sensor, names with U+0000 that would merge two sensors, loose times, and floods of made-up
 * sensor names meant to lock real sensors out. Each message is published and then waited for until the agent
 * committed it, so what the store holds at each step is known.
 */

const deadLetters = async (a: AgentProcess) => await apiGet<DeadLetterView[]>(a.socketPath, '/api/v1/ingest/dead-letters')

/** Publishes at QoS 1 and waits until the agent has committed the message (stored or dead-lettered). */
async function committed (agent: AgentProcess, client: MqttClient, topic: string, payload: string): Promise<void> {
  const before = (await ingest(agent)).received
  await client.publishAsync(topic, payload, { qos: 1 })
  await waitFor(`the message on ${topic}`, async () => (await ingest(agent)).received > before, 10_000, 20)
}

/** A SenML message of `names`, each with `times` readings. */
const senml = (names: string[], times = 1) => JSON.stringify(names.flatMap((n) => Array.from({ length: times }, (_, i) => ({ n, v: i }))))
const range = (prefix: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`)

t.test('a publisher cannot name sensors outside its topic, merge two, make up times, nor lock new sensors out', async (t) => {
  const root = tempDir(t)
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'ingest-sensors',
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    logLevel: 'info',
    config: { mqtt: { topics: ['sensors/#'], maxSensors: 40, batch: { maxMessages: 50, maxDelayMs: 10 }, embeddedBroker: { port } } }
  })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to its own broker', async () => (await ingest(agent)).connected, 10_000)
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, clientId: 'garage', reconnectPeriod: 0 })
  t.teardown(() => { client.end(true) })
  await waitFor('the agent to subscribe', async () => {
    await committed(agent, client, 'sensors/probe', '0')
    return true
  }, 10_000)

  await committed(agent, client, 'sensors/garage', '[{"bn":"sensors/kitchen","n":"","v":99}]')
  await committed(agent, client, 'sensors/x', JSON.stringify([{ bn: 'a', n: 'b\u0000c', v: 1 }]))
  await committed(agent, client, 'sensors/x', '{"value":1,"ts":"5"}')
  await committed(agent, client, 'sensors/x', senml(range('m', 0, 33)))
  const listed = (await sensors(agent)).map((s) => [s.sensor, s.metric, s.value])
  t.same(listed.filter(([sensor]) => sensor !== 'sensors/probe'), [['sensors/garage', 'sensors/kitchen', 99]],
    'a base name is a metric of the topic\'s sensor: sensors/kitchen got nothing')
  t.same((await deadLetters(agent)).slice(0, 3).map((d) => [d.reason, d.detail]), [
    ['too-many-sensors', '33 new sensor metrics in one message, over the 32 one may bring'],
    ['bad-time', 'ts "5" is not a date'],
    ['bad-senml', 'record 0: bn + n holds a control character']
  ], 'U+0000 in a name, a loose time and 33 new names in one message: each in the dead letter with its reason')

  // Made-up names seen once fill the store (40 sensor metrics)…
  await committed(agent, client, 'sensors/flood', senml(range('f', 0, 20)))
  await committed(agent, client, 'sensors/flood', senml(range('f', 20, 40)))
  // …but a real sensor still gets in: the longest silent of those seen once are forgotten to make room.
  await committed(agent, client, 'sensors/real', '21')
  await committed(agent, client, 'sensors/real', '22')
  const afterFlood = await sensors(agent)
  t.equal(afterFlood.length, 40, 'still 40 sensor metrics')
  t.same(afterFlood.find((s) => s.sensor === 'sensors/real')?.value, 22, 'the real sensor is stored')
  // Names sent twice each are not forgotten: 39 of them take the rest of the room for good…
  await committed(agent, client, 'sensors/twice', senml(range('g', 0, 20), 2))
  await committed(agent, client, 'sensors/twice', senml(range('g', 20, 39), 2))
  t.same((await sensors(agent)).filter((s) => s.sensor === 'sensors/flood'), [], 'every name seen once made room')
  // …so a newcomer is refused, and counted, while known sensors go on.
  const before = await ingest(agent)
  await committed(agent, client, 'sensors/late', '5')
  await committed(agent, client, 'sensors/real', '23')
  const after = await ingest(agent)
  t.same({ stored: after.stored - before.stored, rejected: after.rejected - before.rejected }, { stored: 1, rejected: 1 })
  t.match((await deadLetters(agent))[0], { topic: 'sensors/late', reason: 'too-many-sensors', detail: /over the 40 the store keeps \(mqtt\.maxSensors\), and none seen only once/ })
  t.same((await sensors(agent)).find((s) => s.sensor === 'sensors/real')?.value, 23, 'the real sensor goes on being stored')

  // The operator forgets the made-up sensor: its 39 metrics make room.
  const forget = async (body: unknown) => await apiRequest<{ forgotten: number }>(agent.socketPath, 'POST', '/api/v1/sensors/forget', 5_000, body)
  await t.rejects(forget({ sensor: '' }), { status: 400, message: /sensor/ }, 'a request without a sensor is refused, naming the field')
  t.same(await forget({ sensor: 'sensors/twice', metric: 'g0' }), { forgotten: 1 }, 'one metric')
  t.same(await forget({ sensor: 'sensors/twice' }), { forgotten: 38 }, 'all of a sensor\'s metrics')
  t.same(await forget({ sensor: 'sensors/none' }), { forgotten: 0 })
  await committed(agent, client, 'sensors/late', '6')
  t.same((await sensors(agent)).find((s) => s.sensor === 'sensors/late')?.value, 6, 'a newcomer now gets in')
  t.equal(agent.child.exitCode, null, 'the agent is up')
})
