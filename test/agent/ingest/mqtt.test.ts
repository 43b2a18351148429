import { execFile, execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ingest, nodes, publishReadings, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../../helpers/agents.ts'
import { eventually } from '../../helpers/eventually.ts'
import { freePort, startMosquitto } from '../../helpers/mosquitto.ts'

const run = promisify(execFile)

/** The next message on `topic` (retained ones first), as mosquitto_sub prints it; '' when none comes in time. */
async function nextMessage (port: number, topic: string, waitS = 5): Promise<string> {
  try {
    const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-C', '1', '-W', String(waitS)])
    return stdout.trim()
  } catch {
    return ''
  }
}

t.test('presence on the broker: retained availability, Last Will, health, Home Assistant discovery', async (t) => {
  // .ci/run starts a broker with the ingest settings of docs/mqtt.md; elsewhere the test starts its own.
  const shared = process.env.NOODLE_TEST_MQTT_URL
  const broker = shared === undefined ? await startMosquitto() : null
  if (broker !== null) t.teardown(broker.close)
  const url = shared ?? broker?.url as string
  const port = Number(new URL(url).port)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const name = `presence-${process.pid}`
  const config = { mqtt: { url, topics: [`${name}/#`], homeAssistant: true, healthIntervalMs: 1_000 } }
  let agent = await startAgent({ root, name, swarmKeyFile, logLevel: 'info', config })
  t.teardown(() => stopAgents([agent]))
  const availability = `noodle/${name}/availability`
  t.equal(await waitFor('online', async () => await nextMessage(port, availability) === 'online' && 'online', 10_000), 'online', 'online, retained')
  const health = JSON.parse(await nextMessage(port, `noodle/${name}/health`)) as { name: string, role: string, ingest: { connected: boolean } }
  t.equal(health.name, name)
  t.equal(health.ingest.connected, true, 'health carries the ingest figures')
  const discovery = JSON.parse(await nextMessage(port, `homeassistant/sensor/noodle_${name}/cpu/config`)) as Record<string, unknown>
  t.equal(discovery.state_topic, `noodle/${name}/health`)
  t.equal(discovery.availability_topic, availability)
  t.equal(discovery.unit_of_measurement, '%')

  execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', `${name}/probe`, '-m', '7'])
  const probe = async () => (await sensors(agent)).filter((s) => s.sensor === `${name}/probe`).map((s) => s.value)
  t.same(await eventually(probe, [7], { timeoutMs: 10_000 }), [7], 'a reading published to the broker is stored')

  await stopAgents([agent])
  t.equal(await nextMessage(port, availability), 'offline', 'a clean stop leaves "offline" retained')
  agent = await startAgent({ root, name, swarmKeyFile, logLevel: 'info', config, dataDir: agent.dataDir })
  t.equal(await eventually(() => nextMessage(port, availability), 'online', { timeoutMs: 10_000 }), 'online', 'online again after a restart')
  agent.child.kill('SIGKILL')
  await agent.exited
  t.equal(await waitFor('the will', async () => await nextMessage(port, availability) === 'offline' && 'offline', 10_000), 'offline',
    'a killed agent\'s Last Will says "offline"')
})

t.test('the embedded broker: sensors publish to the agent itself', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'embedded',
    swarmKeyFile,
    logLevel: 'info',
    config: { mqtt: { topics: ['sensors/#'], embeddedBroker: { host: '127.0.0.1', port } } }
  })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to its own broker', async () => (await ingest(agent)).connected, 10_000)
  t.equal((await ingest(agent)).broker, `mqtt://127.0.0.1:${port}`)
  for (const v of ['1', '2', '3']) execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', 'sensors/garage', '-m', v])
  const garage = async () => (await sensors(agent)).find((s) => s.sensor === 'sensors/garage')?.count
  t.equal(await eventually(garage, 3, { timeoutMs: 10_000 }), 3, 'the three readings are stored')
  const self = await waitFor('the beacon to show the ingest', async () => {
    const me = (await nodes(agent)).find((n) => n.name === 'embedded')
    return me?.ingest != null && me.ingest.stored >= 3 && me
  }, 10_000)
  t.equal(self.ingest?.connected, true, 'the mesh sees what the box ingests')
})

t.test('messages the broker drops for a slow subscriber show in the beacon', async (t) => {
  const broker = await startMosquitto({ extra: ['max_queued_messages 10'] })
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const config = { mqtt: { url: broker.url, topics: ['drops/#'] } }
  let agent = await startAgent({ root, name: 'drops', swarmKeyFile, logLevel: 'info', config })
  t.teardown(() => stopAgents([agent]))
  await waitFor('connected', async () => (await ingest(agent)).connected, 10_000)
  await stopAgents([agent])
  // Away, the agent's session queues 10 messages; Mosquitto drops the other 40.
  await publishReadings({ url: broker.url, topic: 'drops/x', count: 50 }).done
  agent = await startAgent({ root, name: 'drops', swarmKeyFile, logLevel: 'info', config, dataDir: agent.dataDir })
  const dropped = await waitFor('the drops in the beacon', async () => {
    const me = (await nodes(agent)).find((n) => n.name === 'drops')
    return (me?.ingest?.brokerDropped ?? 0) > 0 && me?.ingest?.brokerDropped
  }, 15_000)
  t.equal(dropped, 40)
  t.match(agent.output(), /the broker is dropping messages/, 'and a warning in the log says what to change')
})

t.test('the MQTT parts follow the config: none, or broker, session, ingest and presence in order', async (t) => {
  const { loadConfig } = await import('../../../agent/config/config.ts')
  const { mqttParts } = await import('../../../agent/ingest/mqtt.ts')
  const { createLogger } = await import('../../../common/logger.ts')
  const log = createLogger('silent')
  const { MetricsStore } = await import('../../../agent/metrics/metrics.ts')
  const metrics = new MetricsStore()
  const sensorsStore = {} as never
  const describe = () => ({})
  t.same(mqttParts({ config: loadConfig({ env: {} }), sensors: sensorsStore, log, metrics, describe }).components, [], 'no url, no topics: nothing')
  const embedded = mqttParts({ config: loadConfig({ env: {}, flags: { 'mqtt-topic': ['a/#'] } }), sensors: sensorsStore, log, metrics, describe })
  t.same(embedded.components.map(([name]) => name), ['mqtt broker', 'mqtt', 'ingest', 'mqtt presence'])
  t.equal(embedded.session?.broker, 'mqtt://127.0.0.1:1883')
  const presenceOnly = mqttParts({ config: loadConfig({ env: {}, flags: { 'mqtt-url': 'mqtt://10.0.0.2' } }), sensors: sensorsStore, log, metrics, describe })
  t.same(presenceOnly.components.map(([name]) => name), ['mqtt', 'mqtt presence'], 'a url and no topics: the box only publishes its presence')
  t.equal(presenceOnly.ingest, null)
  const config = loadConfig({ env: { NOODLE_MQTT_PASSWORD_FILE: '/nonexistent/secret' }, flags: { 'mqtt-url': 'mqtt://10.0.0.2' } })
  t.throws(() => mqttParts({ config, sensors: sensorsStore, log, metrics, describe }), { code: 'ERR_CONFIG', key: 'mqtt.passwordFile', message: /cannot read \/nonexistent\/secret/ })
})
