import t from 'tap'
import { loadConfig } from '../../agent/config/config.ts'

const topics = { 'mqtt-topic': ['sensors/#'] }

t.test('the embedded broker listens on loopback unless it has a password file', async (t) => {
  const plain = loadConfig({ env: {}, flags: topics }).mqtt.embeddedBroker
  t.same({ host: plain.host, maxClients: plain.maxClients, maxPacketBytes: plain.maxPacketBytes, passwordFile: plain.passwordFile },
    { host: '127.0.0.1', maxClients: 1_000, maxPacketBytes: 65_536 + 65_536, passwordFile: undefined }, 'the defaults')
  for (const host of ['localhost', '::1', '127.0.0.2', '::ffff:127.0.0.1']) {
    t.equal(loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_HOST: host }, flags: topics }).mqtt.embeddedBroker.host, host, `${host} is loopback`)
  }
  for (const host of ['0.0.0.0', '::', '192.0.2.7', '127.0.0.1.example']) {
    t.throws(() => loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_HOST: host }, flags: topics }), {
      code: 'ERR_CONFIG',
      key: 'mqtt.embeddedBroker.host',
      message: new RegExp(`is ${host.replace(/\./g, '\\.')}, which others can reach: .*passwordFile .*\\(from NOODLE_MQTT_EMBEDDED_BROKER_HOST\\)$`)
    }, `${host} without a password file`)
  }
  const open = loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_HOST: '0.0.0.0', NOODLE_MQTT_EMBEDDED_BROKER_PASSWORD_FILE: '/etc/noodle/mqtt.passwd' }, flags: topics })
  t.same([open.mqtt.embeddedBroker.host, open.mqtt.embeddedBroker.passwordFile], ['0.0.0.0', '/etc/noodle/mqtt.passwd'], 'with a password file, any host')
  const off = loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_HOST: '0.0.0.0', NOODLE_MQTT_URL: 'mqtt://192.0.2.1' }, flags: topics })
  t.equal(off.mqtt.embeddedBroker.enabled, false, 'a broker that does not run is not checked')
})

t.test('the packet and connection limits are checked and default from maxPayloadBytes', async (t) => {
  const sized = loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_MAX_PACKET_BYTES: '2048', NOODLE_MQTT_EMBEDDED_BROKER_MAX_CLIENTS: '5' }, flags: topics })
  t.same([sized.mqtt.embeddedBroker.maxPacketBytes, sized.mqtt.embeddedBroker.maxClients], [2048, 5])
  t.throws(() => loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_MAX_PACKET_BYTES: '100' }, flags: topics }),
    { code: 'ERR_CONFIG', key: 'mqtt.embeddedBroker.maxPacketBytes' })
  t.throws(() => loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_MAX_CLIENTS: '0' }, flags: topics }),
    { code: 'ERR_CONFIG', key: 'mqtt.embeddedBroker.maxClients' })
  t.equal(loadConfig({ env: {}, flags: topics }).mqtt.embeddedBroker.maxClientsPerAddress, 1_000, 'per address, on loopback (where every local client shares one): maxClients')
  t.equal(loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_HOST: '0.0.0.0', NOODLE_MQTT_EMBEDDED_BROKER_PASSWORD_FILE: '/etc/noodle/mqtt.passwd' }, flags: topics }).mqtt.embeddedBroker.maxClientsPerAddress, 16, 'elsewhere: 16')
  t.equal(loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_MAX_CLIENTS_PER_ADDRESS: '64' }, flags: topics }).mqtt.embeddedBroker.maxClientsPerAddress, 64)
  t.throws(() => loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_MAX_CLIENTS_PER_ADDRESS: '0' }, flags: topics }),
    { code: 'ERR_CONFIG', key: 'mqtt.embeddedBroker.maxClientsPerAddress' })
})
