import t from 'tap'
import { z } from 'zod'
import { loadConfig, SETTINGS } from '../../../agent/config/config.ts'
import type { Setting } from '../../../agent/config/config.ts'
import { agentFlagOptions, agentFlags, agentFlagsHelp } from '../../../agent/config/flags.ts'
import { readSettingText, settingsOf } from '../../../agent/config/settings.ts'
import { ConfigError } from '../../../common/errors.ts'

const PEER = '12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ'

/** The environment variables before the schema was the source: each must still set the same key. */
const ENV_BEFORE = [
  'name', 'dataDir', 'logLevel', 'listen', 'bootstrap', 'swarmKeyFile', 'mdns.enabled', 'mdns.intervalMs', 'health.intervalMs',
  'gossip.degree', 'membership.probeAfterMs', 'membership.probeTimeoutMs', 'membership.unresponsiveAfterMs', 'membership.reapAfterMs',
  'membership.redialIntervalMs', 'membership.maxMembers', 'coordinator.eligible', 'coordinator.priority', 'coordinator.evaluateIntervalMs',
  'coordinator.maxCpuPct', 'coordinator.orphanAfterMs', 'remoteWork.sources', 'remoteWork.maxModelBytes', 'cameraCredentialsFile',
  'api.socketPath', 'api.headersTimeoutMs', 'api.requestTimeoutMs', 'api.tcp.host', 'api.tcp.port', 'api.tcp.certFile', 'api.tcp.keyFile',
  'api.tcp.maxConnections', 'api.tcp.maxConnectionsPerAddress', 'models.standby', 'models.importDir', 'models.maxModelBytes',
  'models.fetchIdleTimeoutMs', 'models.standbyRetainMs', 'models.standbyMaxBytes', 'mqtt.url', 'mqtt.username', 'mqtt.passwordFile',
  'mqtt.clientId', 'mqtt.topics', 'mqtt.qos', 'mqtt.maxSensors', 'mqtt.embeddedBroker.enabled', 'mqtt.embeddedBroker.host',
  'mqtt.embeddedBroker.port', 'mqtt.embeddedBroker.passwordFile', 'mqtt.embeddedBroker.maxPacketBytes', 'mqtt.embeddedBroker.maxClients',
  'mqtt.embeddedBroker.maxClientsPerAddress', 'mqtt.baseTopic', 'mqtt.homeAssistant'
]

/** A valid value, as text, for each setting read as text whose value no rule can make up. */
const TEXT_SAMPLES: Record<string, string> = {
  name: 'pi-kitchen',
  dataDir: '/var/lib/noodle',
  listen: '/ip4/127.0.0.1/tcp/4101,/ip4/127.0.0.1/tcp/4102',
  bootstrap: `/ip4/192.0.2.7/tcp/4001/p2p/${PEER}`,
  swarmKeyFile: '/etc/noodle/swarm.key',
  'remoteWork.sources': 'rtsp://192.0.2.10,lavfi:',
  cameraCredentialsFile: '/etc/noodle/cameras.json',
  'models.importDir': '/srv/models',
  'api.socketPath': '/run/noodle/agent.sock',
  'api.tcp.host': '192.0.2.1',
  'api.tcp.certFile': '/etc/noodle/api.crt',
  'api.tcp.keyFile': '/etc/noodle/api.key',
  'mqtt.url': 'mqtts://broker.lan:8883',
  'mqtt.username': 'noodle',
  'mqtt.passwordFile': '/etc/noodle/mqtt.pass',
  'mqtt.clientId': 'noodle-test',
  'mqtt.tls.caFile': '/etc/noodle/ca.pem',
  'mqtt.tls.certFile': '/etc/noodle/mqtt.crt',
  'mqtt.tls.keyFile': '/etc/noodle/mqtt.key',
  'mqtt.topics': 'sensors/#,zigbee2mqtt/+',
  'mqtt.valueFields': 'temperature,humidity',
  'mqtt.embeddedBroker.host': '0.0.0.0',
  'mqtt.embeddedBroker.passwordFile': '/etc/noodle/mqtt.passwd',
  'mqtt.baseTopic': 'house/noodle'
}

/** A valid value unlike the default: the next number up (within the other settings' rules), the other boolean. */
function sample (setting: Setting): { text: string, value: unknown } {
  const given = TEXT_SAMPLES[setting.key]
  if (given !== undefined) {
    return { text: given, value: setting.kind === 'list' ? given.split(',') : given }
  }
  switch (setting.kind) {
    case 'boolean':
      return { text: String(setting.defaultValue !== true), value: setting.defaultValue !== true }
    case 'int':
    case 'number': {
      if (setting.key === 'mqtt.qos') return { text: '0', value: 0 }
      // Unset ones take the lowest value the type line names; the rest one more than their default.
      const value = setting.defaultValue === undefined ? Number(/(\d+)–/.exec(setting.type)?.[1]) : (setting.defaultValue as number) + 1
      return { text: String(value), value }
    }
    case 'string':
      if (setting.key === 'logLevel') return { text: 'debug', value: 'debug' }
  }
  throw new Error(`no sample value for ${setting.key}: add one to TEXT_SAMPLES`)
}

function at (config: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], config)
}

t.test('every setting but a list of objects has an environment variable, named by the rule', async (t) => {
  t.same(SETTINGS.filter((s) => s.env === undefined).map((s) => s.key), ['work', 'mqtt.topicParsing'], 'lists of objects: file only')
  const names = SETTINGS.flatMap((s) => s.env === undefined ? [] : [s.env])
  t.equal(new Set(names).size, names.length, 'no two settings share a variable')
  const envOf = new Map(SETTINGS.map((s) => [s.key, s.env]))
  const before = ENV_BEFORE.map((key) => [key, envOf.get(key)])
  t.same(before.filter(([, env]) => env === undefined), [], 'every key settable before still is')
  t.equal(envOf.get('mqtt.retention.rawHours'), 'NOODLE_MQTT_RETENTION_RAW_HOURS')
  t.equal(envOf.get('mqtt.tls.rejectUnauthorized'), 'NOODLE_MQTT_TLS_REJECT_UNAUTHORIZED')
  t.equal(envOf.get('api.tcp.maxConnectionsPerAddress'), 'NOODLE_API_TCP_MAX_CONNECTIONS_PER_ADDRESS')
})

t.test('settings new to the environment: representative ones', async (t) => {
  const c = loadConfig({
    env: {
      NOODLE_MQTT_RETENTION_RAW_HOURS: '12.5',
      NOODLE_MQTT_VALUE_FIELDS: 'temperature, humidity',
      NOODLE_MQTT_TLS_REJECT_UNAUTHORIZED: 'no',
      NOODLE_MQTT_BATCH_MAX_MESSAGES: '50',
      NOODLE_MQTT_KEEPALIVE_SEC: '60'
    }
  })
  t.same({
    rawHours: c.mqtt.retention.rawHours,
    valueFields: c.mqtt.valueFields,
    rejectUnauthorized: c.mqtt.tls.rejectUnauthorized,
    maxMessages: c.mqtt.batch.maxMessages,
    keepaliveSec: c.mqtt.keepaliveSec,
    minuteDays: c.mqtt.retention.minuteDays
  }, { rawHours: 12.5, valueFields: ['temperature', 'humidity'], rejectUnauthorized: false, maxMessages: 50, keepaliveSec: 60, minuteDays: 30 })

  const errorOf = (env: Record<string, string>): ConfigError | undefined => {
    try {
      loadConfig({ env })
    } catch (err) {
      if (err instanceof ConfigError) return err
      throw err
    }
    return undefined
  }
  t.match(errorOf({ NOODLE_MQTT_RETENTION_RAW_HOURS: 'two days' }),
    { key: 'mqtt.retention.rawHours', message: /must be a number, got "two days" \(from NOODLE_MQTT_RETENTION_RAW_HOURS\)/ })
  t.match(errorOf({ NOODLE_MQTT_RETENTION_RAW_HOURS: '0' }),
    { key: 'mqtt.retention.rawHours', message: /\(from NOODLE_MQTT_RETENTION_RAW_HOURS\)$/ }, 'the schema checks the value and the error names the variable')
  t.match(errorOf({ NOODLE_MQTT_VALUE_FIELDS: ',' }), { key: 'mqtt.valueFields', message: /NOODLE_MQTT_VALUE_FIELDS/ })
})

t.test('every environment variable, set at once, lands on its key', async (t) => {
  const expected: Record<string, unknown> = {}
  const env: Record<string, string> = {}
  for (const setting of SETTINGS) {
    if (setting.env === undefined) continue
    const { text, value } = sample(setting)
    env[setting.env] = text
    expected[setting.key] = value
  }
  const config = loadConfig({ env })
  t.same(Object.fromEntries(Object.keys(expected).map((key) => [key, at(config, key)])), expected)
})

t.test('text is read as its setting\'s kind', async (t) => {
  const setting = (kind: Setting['kind']): Setting => ({ key: 'k', kind, description: '', defaultValue: undefined, type: '' })
  t.same(readSettingText(setting('list'), ' a , ,b', 'X'), ['a', 'b'])
  t.equal(readSettingText(setting('number'), '-1.5', 'X'), -1.5)
  t.equal(readSettingText(setting('int'), '7', 'X'), 7)
  t.throws(() => readSettingText(setting('int'), '7.5', 'X'), { key: 'k', message: /an integer, got "7.5" \(from X\)/ })
  t.equal(readSettingText(setting('boolean'), 'ON', 'X'), true)
  t.throws(() => readSettingText(setting('objects'), '[]', 'X'), { key: 'k', message: /config file only/ })
})

t.test('a setting the schema cannot describe is refused where it is declared', async (t) => {
  t.throws(() => settingsOf(z.strictObject({ a: z.int() })), /config setting a has no description/)
  t.throws(() => settingsOf(z.strictObject({ a: z.date().meta({ description: 'when' }) })), /config setting a: no rule reads a date/)
  t.throws(() => settingsOf(z.strictObject({ a: z.union([z.literal('x'), z.literal(1)]).meta({ description: 'x' }) })), /no rule reads a union/)
  t.same(settingsOf(z.strictObject({ o: z.strictObject({ b: z.boolean().default(false).meta({ description: 'b', env: 'B' }) }).prefault({}) })),
    [{ key: 'o.b', env: 'B', kind: 'boolean', description: 'b', defaultValue: false, type: 'boolean' }], 'an env name the meta gives wins')
})

t.test('the flags of noodle agent come from the schema, as they were', async (t) => {
  t.same(agentFlags().map((f) => f.name),
    ['config', 'name', 'data-dir', 'log-level', 'listen', 'bootstrap', 'swarm-key', 'no-mdns', 'mqtt-url', 'mqtt-topic'])
  t.same(agentFlagOptions('listen', 'no-mdns', 'swarm-key'),
    { listen: { type: 'string', multiple: true }, 'no-mdns': { type: 'boolean' }, 'swarm-key': { type: 'string' } })
  const help = agentFlagsHelp().split('\n')
  t.equal(help[0], '  --config FILE        JSON config file (also NOODLE_CONFIG)')
  t.ok(help.includes('  --bootstrap MULTIADDR  a peer to join through, /ip4/…/tcp/…/p2p/<peer id>, repeatable'), 'a long flag keeps two spaces')
  t.ok(help.includes('  --no-mdns            do not discover peers on the LAN with mDNS'))
  const c = loadConfig({ env: {}, flags: { 'no-mdns': false, 'swarm-key': '/k', 'log-level': 'warn' } })
  t.same([c.mdns.enabled, c.swarmKeyFile, c.logLevel], [true, '/k', 'warn'], 'a switch not given sets nothing')
})

t.test('a section set by one variable names that variable when another of its settings is missing', async (t) => {
  t.throws(() => loadConfig({ env: { HOME: '/tmp', NOODLE_API_TCP_PORT: '8443' } }),
    { key: 'api.tcp.certFile', message: /\(from NOODLE_API_TCP_PORT\)$/ })
})
