import { execFile, execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { apiText } from '../../agent/cli/client.ts'
import { BIN, ingest, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { freePort } from '../helpers/mosquitto.ts'
import { MOSQUITTO_PASSWD, brokerStats, closedWithin, connect, connected, skip, subackCodes } from './broker-client.ts'

/**
 * The embedded broker attacked from the LAN's side: clients without credentials, with wrong ones, with the
 * agent's own client id, reading everything, publishing where they must not, retained discovery configs, huge
 * packets and too many connections. The agent stays up, counts each refusal, and still stores a good reading.
 */

/** Whether the broker closes the connection within `ms` after `action`; the client is ended after. */
async function closedAfter (client: MqttClient, action: () => void, ms = 3_000): Promise<'closed' | 'open'> {
  const verdict = await closedWithin(client, ms, action)
  client.end(true)
  return verdict
}

/** The messages on `filter` that arrive within `ms` (retained ones at once). */
async function messagesOn (client: MqttClient, filter: string, ms = 1_000): Promise<string[]> {
  const seen: string[] = []
  client.on('message', (topic, payload) => { seen.push(`${topic} ${payload.toString()}`) })
  await client.subscribeAsync(filter)
  await new Promise((resolve) => setTimeout(resolve, ms))
  return seen
}

t.test('the embedded broker with a password file refuses what it must, and still stores a good reading', { skip }, async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const passwordFile = join(root, 'mqtt.passwd')
  // Made by the tool operators use: PBKDF2 (Mosquitto 2's default) and the older salted SHA-512.
  execFileSync(MOSQUITTO_PASSWD, ['-c', '-b', passwordFile, 'sensor', 's3cret'])
  execFileSync(MOSQUITTO_PASSWD, ['-H', 'sha512', '-b', passwordFile, 'legacy', 'old-one'])
  const port = await freePort()
  const name = 'broker-attack'
  const agent = await startAgent({
    root,
    name,
    swarmKeyFile,
    logLevel: 'info',
    config: {
      mqtt: {
        topics: ['sensors/#'],
        homeAssistant: true,
        healthIntervalMs: 1_000,
        embeddedBroker: { host: '127.0.0.1', port, passwordFile, maxPacketBytes: 4_096 }
      }
    }
  })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to its own broker', async () => (await ingest(agent)).connected, 10_000)
  const sensor = { username: 'sensor', password: 's3cret' }

  t.equal(await connect(port, {}), 'refused 5', 'anonymous: not authorized')
  t.equal(await connect(port, { username: 'sensor', password: 'wrong' }), 'refused 4', 'a wrong password: bad user name or password')
  t.equal(await connect(port, { username: 'nobody', password: 's3cret' }), 'refused 4', 'an unknown user')
  t.equal(await connect(port, { ...sensor, clientId: `noodle-${name}` }), 'refused 2',
    'the agent\'s own client id, even with good credentials: identifier rejected')
  t.equal((await ingest(agent)).connected, true, 'and the agent\'s own session was not taken over')

  const reader = await connected(port, { ...sensor, clientId: 'reader' })
  t.same(await subackCodes(reader, ['#', 'sensors/#', '$SYS/#', 'noodle/+/health', `noodle/${name}/#`, 'homeassistant/#']),
    [128, 128, 128, 128, 0, 0], 'only the agent\'s own topics may be read: the rest are refused in the SUBACK (0x80)')
  t.equal(await closedAfter(reader, () => {}), 'open', 'and the reader stays connected')

  const publisher = async (): Promise<MqttClient> => await connected(port, { ...sensor, clientId: 'publisher' })
  t.equal(await closedAfter(await publisher(), () => {}), 'open', 'a client that behaves stays connected')
  const refusedPublishes: Array<[string, string, boolean]> = [
    ['a topic the agent does not ingest', 'elsewhere/x', false],
    ['a retained reading', 'sensors/kitchen', true],
    ['a retained Home Assistant discovery config', 'homeassistant/sensor/evil/config', true],
    ['the agent\'s availability', `noodle/${name}/availability`, false],
    ['a $SYS topic', '$SYS/broker/uptime', false]
  ]
  for (const [what, topic, retain] of refusedPublishes) {
    const client = await publisher()
    t.equal(await closedAfter(client, () => { client.publish(topic, 'offline', { qos: 0, retain }) }), 'closed', `${what}: refused, connection closed`)
  }
  const viewer = await connected(port, { ...sensor, clientId: 'viewer' })
  t.same(await messagesOn(viewer, 'homeassistant/sensor/evil/#'), [], 'the forged discovery config was not kept')
  const availability = await messagesOn(viewer, `noodle/${name}/availability`)
  t.same(availability, [`noodle/${name}/availability online`], 'the agent\'s retained availability is its own')
  viewer.end(true)

  const big = await publisher()
  t.equal(await closedAfter(big, () => { big.publish('sensors/kitchen', Buffer.alloc(8_000, 'x'), { qos: 0 }) }), 'closed',
    'a packet over maxPacketBytes closes the connection')
  t.equal(await rawOversizedPublish(port, sensor), 'closed', 'a header announcing 256 MB closes it before the body is read')

  const stats = await brokerStats(agent)
  t.same(stats?.refused, { credentials: 3, clientId: 1, publish: 5, subscribe: 4, packetSize: 2, connections: 0, addressConnections: 0, revoked: 0 }, 'each refusal counted')
  const metrics = await apiText(agent.socketPath, '/metrics')
  t.match(metrics, /^noodle_mqtt_broker_refused_total\{reason="publish"\} 5$/m, 'and in GET /metrics')
  t.match(metrics, /^noodle_mqtt_broker_refused_total\{reason="clientId"\} 1$/m)
  t.equal(agent.child.exitCode, null, 'the agent is up')

  // After all that, good readings from both kinds of users are stored.
  for (const [user, password, value] of [['sensor', 's3cret', 21.5], ['legacy', 'old-one', 22.5]] as const) {
    const client = await connected(port, { username: user, password, clientId: `good-${user}` })
    await client.publishAsync(`sensors/${user}`, String(value), { qos: 1 })
    await client.endAsync()
  }
  const stored = await waitFor('both readings', async () => {
    const seen = (await sensors(agent)).filter((s) => s.sensor.startsWith('sensors/')).map((s) => [s.sensor, s.value])
    return seen.length === 2 && seen
  }, 10_000)
  t.same(stored.sort(), [['sensors/legacy', 22.5], ['sensors/sensor', 21.5]])

  // A user added with mosquitto_passwd while the agent runs may connect within a few seconds.
  execFileSync(MOSQUITTO_PASSWD, ['-b', passwordFile, 'added', 'later'])
  const added = await waitFor('the new user', async () => {
    const client = await connect(port, { username: 'added', password: 'later' })
    return typeof client !== 'string' && client
  }, 10_000)
  t.equal(added.connected, true, 'the password file is read again when it changes')
  added.end(true)
})

/** Sends a CONNECT, then a PUBLISH header that announces 256 MB, and a little of its body. */
async function rawOversizedPublish (port: number, credentials: { username: string, password: string }): Promise<'closed' | 'open'> {
  const socket = net.connect({ host: '127.0.0.1', port })
  const closed = new Promise<'closed'>((resolve) => { socket.once('close', () => { resolve('closed') }) })
  socket.on('error', () => {})
  await new Promise((resolve) => socket.once('connect', resolve))
  const { username, password } = credentials
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'raw', clean: true, keepalive: 30, username, password: Buffer.from(password) }))
  await new Promise((resolve) => socket.once('data', resolve))
  socket.write(Buffer.concat([Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(1_000, 'x')]))
  const verdict = await Promise.race([closed, new Promise<'open'>((resolve) => setTimeout(() => { resolve('open') }, 3_000))])
  socket.destroy()
  return verdict
}

t.test('connections over mqtt.embeddedBroker.maxClients are closed and counted; later ones get in', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const port = await freePort()
  const agent = await startAgent({
    root,
    name: 'broker-cap',
    swarmKeyFile,
    logLevel: 'info',
    // The url names the embedded broker itself: the session is still the agent's own (reserved client id, secret).
    config: { mqtt: { url: `mqtt://127.0.0.1:${port}`, topics: ['sensors/#'], embeddedBroker: { enabled: true, port, maxClients: 3, maxClientsPerAddress: 100 } } }
  })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to its own broker', async () => (await ingest(agent)).connected, 10_000)
  // The agent's own session is inside the process: it holds none of the three.
  const idle = await Promise.all(Array.from({ length: 5 }, async () => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.on('error', () => {})
    await new Promise((resolve) => socket.once('connect', resolve))
    return socket
  }))
  t.teardown(() => { for (const socket of idle) socket.destroy() })
  t.equal(await waitFor('2 refusals', async () => (await brokerStats(agent))?.refused.connections === 2 && 2, 5_000), 2)
  for (const socket of idle) socket.destroy()
  const client = await waitFor('a connection to get in', async () => {
    const c = await connect(port, { clientId: 'after' })
    return typeof c !== 'string' && c
  }, 5_000)
  await client.publishAsync('sensors/after', '7', { qos: 1 })
  await client.endAsync()
  const reading = await waitFor('the reading', async () => (await sensors(agent)).find((s) => s.sensor === 'sensors/after'), 10_000)
  t.equal(reading.value, 7, 'stored')
  t.equal((await ingest(agent)).connected, true, 'the agent\'s own session is still connected')
})

/** Runs `noodle agent` with `config` and waits for it to exit (a config it refuses stops it at once). */
async function refusedStart (root: string, swarmKeyFile: string, config: Record<string, unknown>): Promise<{ code: number | null, stderr: string }> {
  const configFile = join(root, 'refused.json')
  writeFileSync(configFile, JSON.stringify(config))
  return await new Promise((resolve) => {
    execFile(BIN, ['agent', '--data-dir', join(root, 'refused'), '--config', configFile, '--swarm-key', swarmKeyFile, '--no-mdns', '--listen', '/ip4/127.0.0.1/tcp/0'],
      { timeout: 20_000 }, (err, _stdout, stderr) => { resolve({ code: err === null ? 0 : (err.code as number), stderr }) })
  })
}

t.test('a broker that others can reach needs a password file; a bad password file stops the start', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const port = await freePort()
  const open = await refusedStart(root, swarmKeyFile, { mqtt: { topics: ['s/#'], embeddedBroker: { host: '0.0.0.0', port } } })
  t.equal(open.code, 1)
  t.match(open.stderr, /^noodle: mqtt\.embeddedBroker\.host: is 0\.0\.0\.0, which others can reach: a broker off loopback needs mqtt\.embeddedBroker\.passwordFile .*\(from .*refused\.json\)\n$/)
  const plain = join(root, 'plain.passwd')
  writeFileSync(plain, '# users\nsensor:not-hashed\n')
  const unhashed = await refusedStart(root, swarmKeyFile, { mqtt: { topics: ['s/#'], embeddedBroker: { host: '0.0.0.0', port, passwordFile: plain } } })
  t.equal(unhashed.code, 1)
  t.match(unhashed.stderr, /noodle: mqtt\.embeddedBroker\.passwordFile: line 2: the password of "sensor" is not a \$6\$ or \$7\$ hash/)
})
