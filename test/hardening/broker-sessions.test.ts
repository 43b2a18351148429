import { execFileSync } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { ingest, sensors, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { freePort } from '../helpers/mosquitto.ts'
import { MOSQUITTO_PASSWD, brokerStats, closedWithin, connack, connect, connected, skip, subackCodes } from './broker-client.ts'

/**
 * The embedded broker's resources and names attacked by clients that may connect: persistent sessions (kept in
 * memory for ever), long client ids, many subscriptions, topics MQTT forbids, the agent's bare topics, idle
 * sockets from one address, and users removed from the password file while connected. The agent stays up,
 * counts each refusal, and still stores a good reading.
 */

/** A raw PUBLISH (QoS 0) of `topic`'s bytes, as given, on a fresh connection; whether the broker then closes it. */
async function rawPublish (port: number, credentials: { username: string, password: string }, topic: Buffer): Promise<'closed' | 'open'> {
  const socket = net.connect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  const closed = new Promise<'closed'>((resolve) => { socket.once('close', () => { resolve('closed') }) })
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'raw', clean: true, keepalive: 30, username: credentials.username, password: Buffer.from(credentials.password) }))
  await new Promise((resolve) => socket.once('data', resolve))
  const payload = Buffer.from('1')
  const length = Buffer.alloc(2)
  length.writeUInt16BE(topic.length)
  socket.write(Buffer.concat([Buffer.from([0x30, 2 + topic.length + payload.length]), length, topic, payload]))
  const verdict = await Promise.race([closed, new Promise<'open'>((resolve) => setTimeout(() => { resolve('open') }, 2_000))])
  socket.destroy()
  return verdict
}

t.test('the embedded broker keeps no client\'s session, names or slots beyond its limits, and ends revoked users', { skip }, async (t) => {
  const root = tempDir(t)
  const passwordFile = join(root, 'mqtt.passwd')
  execFileSync(MOSQUITTO_PASSWD, ['-c', '-b', passwordFile, 'sensor', 's3cret'])
  execFileSync(MOSQUITTO_PASSWD, ['-b', passwordFile, 'keeper', 'kept'])
  const port = await freePort()
  const name = 'broker-sessions'
  const agent = await startAgent({
    root,
    name,
    swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')),
    logLevel: 'info',
    // '#': every topic is ingested, so only the broker's own rules keep the agent's bare topics safe.
    config: { mqtt: { topics: ['#'], embeddedBroker: { host: '127.0.0.1', port, passwordFile, maxClientsPerAddress: 6 } } }
  })
  t.teardown(() => stopAgents([agent]))
  await waitFor('the agent to connect to its own broker', async () => (await ingest(agent)).connected, 10_000)
  const sensor = { username: 'sensor', password: 's3cret' }

  // A persistent session asked for (ESPHome's default) is a clean one: nothing of it is kept once it leaves.
  const persistent = await connected(port, { ...sensor, clientId: 'kept-session', clean: false })
  t.same(await subackCodes(persistent, [`noodle/${name}/kept`]), [0])
  persistent.end(true)
  t.same(await connack(port, { ...sensor, clientId: 'kept-session', clean: false }), { returnCode: 0, sessionPresent: false }, 'it comes back to no session kept')
  t.equal(await connect(port, { ...sensor, clientId: 'x'.repeat(65) }), 'refused 2', 'a client id over 64 characters: identifier rejected')
  const longId = await connected(port, { ...sensor, clientId: 'y'.repeat(64) })
  t.equal(longId.connected, true, '64 characters are taken')
  longId.end(true)

  const reader = await connected(port, { ...sensor, clientId: 'reader' })
  const filters = Array.from({ length: 33 }, (_, i) => `noodle/${name}/f${i}`)
  t.same(await subackCodes(reader, filters), [...Array(32).fill(0), 128], 'at most 32 filters a connection: the 33rd refused in the SUBACK')
  t.same(await subackCodes(reader, [`noodle/${name}/f0`]), [0], 'a filter it holds is granted again')
  reader.end(true)

  for (const [what, topic] of [['U+0000', Buffer.from('sensors/a\u0000b')], ['invalid UTF-8', Buffer.from([0x73, 0x2f, 0xff, 0xfe])],
    ['a control character', Buffer.from('sensors/\u0007')], ['a wildcard', Buffer.from('sensors/+')]] as const) {
    t.equal(await rawPublish(port, sensor, topic), 'closed', `a topic with ${what}: refused, connection closed`)
  }
  for (const topic of ['noodle', 'homeassistant']) {
    const client = await connected(port, { ...sensor, clientId: `bare-${topic}` })
    t.equal(await closedWithin(client, 2_000, () => { client.publish(topic, '1', { qos: 0 }) }), 'closed', `the bare ${topic} topic: refused`)
  }

  // Idle sockets from one address take its 6 slots; the 7th and 8th are closed; the agent's session takes none.
  const idle = await Promise.all(Array.from({ length: 8 }, async () => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.on('error', () => {})
    await new Promise((resolve) => socket.once('connect', resolve))
    return socket
  }))
  t.equal(await waitFor('2 refusals', async () => (await brokerStats(agent)).refused.addressConnections === 2 && 2, 5_000), 2)
  t.equal((await ingest(agent)).connected, true, 'the agent\'s own session is connected all the same')
  for (const socket of idle) socket.destroy()

  // The address's slots come free as the broker sees the idle sockets close, a moment after.
  t.equal(await waitFor('the broker to see them gone', async () => (await brokerStats(agent)).clients === 0 && 0, 5_000), 0)

  // Users removed, or whose password changes, are disconnected within the file's poll (2 s).
  const removed = await connected(port, { ...sensor, clientId: 'removed' })
  const keeper = await connected(port, { username: 'keeper', password: 'kept', clientId: 'keeper' })
  const removedClosed = closedWithin(removed, 8_000)
  execFileSync(MOSQUITTO_PASSWD, ['-D', passwordFile, 'sensor'])
  t.equal(await removedClosed, 'closed', 'a user taken out of the password file is disconnected')
  t.equal(keeper.connected, true, 'another user stays')
  t.equal(await connect(port, { ...sensor, clientId: 'removed' }), 'refused 4', 'and cannot come back')
  const keeperClosed = closedWithin(keeper, 8_000)
  execFileSync(MOSQUITTO_PASSWD, ['-b', passwordFile, 'keeper', 'changed'])
  t.equal(await keeperClosed, 'closed', 'a user whose password changed is disconnected')
  keeper.end(true)

  const stats = await brokerStats(agent)
  // Publishes: U+0000, invalid UTF-8, the control character and the two bare topics (aedes refuses wildcards itself).
  t.same(stats.refused, { credentials: 1, clientId: 1, publish: 5, subscribe: 1, packetSize: 0, connections: 0, addressConnections: 2, revoked: 2 }, 'each counted')

  const good = await connected(port, { username: 'keeper', password: 'changed', clientId: 'good' })
  await good.publishAsync('sensors/good', '7', { qos: 1 })
  await good.endAsync()
  const reading = await waitFor('the good reading', async () => (await sensors(agent)).find((s) => s.sensor === 'sensors/good'), 10_000)
  t.equal(reading.value, 7, 'a good reading is stored after all that')
  t.equal(agent.child.exitCode, null, 'the agent is up')
})
