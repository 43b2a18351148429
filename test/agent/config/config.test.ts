import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigSchema, bootstrapPeerIds, envVarFor, loadConfig } from '../../../agent/config/config.ts'
import { ConfigError } from '../../../common/errors.ts'

const PEER = '12D3KooWQwdqLaMv2dPBv1WVywHdTerao7cMJEuVyEuGUTJTz1hJ'

/** The ConfigError thrown by loadConfig, so each case can assert the key and the source it names. */
function configError (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('defaults: hostname, per-user data dir, port 4001, mDNS on, 1 s beacons', async (t) => {
  const c = loadConfig({ env: { XDG_STATE_HOME: '/state' } })
  t.equal(c.dataDir, '/state/noodle')
  t.same(c.listen, ['/ip4/0.0.0.0/tcp/4001'])
  t.same(c.bootstrap, [])
  t.equal(c.mdns.enabled, true)
  t.equal(c.health.intervalMs, 1000)
  t.equal(c.gossip.degree, 0)
  t.equal(c.swarmKeyFile, '/state/noodle/swarm.key')
  t.equal(c.api.socketPath, '/state/noodle/agent.sock')
  t.ok(ConfigSchema.safeParse({ dataDir: '/d' }).success, 'the defaults pass their own schema')
})

t.test('env var names follow the key path', async (t) => {
  t.equal(envVarFor('dataDir'), 'NOODLE_DATA_DIR')
  t.equal(envVarFor('membership.deadAfterMs'), 'NOODLE_MEMBERSHIP_DEAD_AFTER_MS')
  t.equal(envVarFor('mdns.enabled'), 'NOODLE_MDNS_ENABLED')
})

t.test('precedence: flags over environment over file over defaults', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'noodle.json')
  writeFileSync(file, JSON.stringify({ name: 'from-file', logLevel: 'warn', health: { intervalMs: 700 }, mdns: { enabled: false }, dataDir: '/file/dir' }))
  const env = { NOODLE_CONFIG: file, NOODLE_NAME: 'from-env', NOODLE_HEALTH_INTERVAL_MS: '900', NOODLE_LISTEN: '/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2' }
  const c = loadConfig({ env, flags: { name: 'from-flag', 'data-dir': '/flag/dir', bootstrap: [`/ip4/10.0.0.1/tcp/4001/p2p/${PEER}`] } })
  t.equal(c.name, 'from-flag')
  t.equal(c.dataDir, '/flag/dir')
  t.equal(c.logLevel, 'warn', 'file value kept where nothing overrides it')
  t.equal(c.mdns.enabled, false)
  t.equal(c.health.intervalMs, 900, 'env beats file')
  t.same(c.listen, ['/ip4/127.0.0.1/tcp/1', '/ip4/127.0.0.1/tcp/2'], 'env lists are comma-separated')
  t.equal(c.bootstrap.length, 1)
  t.equal(c.membership.probeAfterMs, 1100, 'untouched nested keys keep their defaults')
  t.equal(loadConfig({ env: {}, flags: { 'no-mdns': true } }).mdns.enabled, false, '--no-mdns')
  t.equal(loadConfig({ env: { NOODLE_MDNS_ENABLED: 'off' } }).mdns.enabled, false, 'booleans read off/on')
  t.equal(loadConfig({ env: {}, flags: { config: file } }).name, 'from-file', '--config FILE')
})

t.test('bad values name the key and where the value came from', async (t) => {
  const dir = t.testdir()
  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['listen flag', () => loadConfig({ env: {}, flags: { listen: ['not-an-addr'] } }), 'listen[0]', /multiaddr.*--listen/],
    ['udp listen', () => loadConfig({ env: {}, flags: { listen: ['/ip4/0.0.0.0/udp/1'] } }), 'listen[0]', /TCP listen address/],
    ['bootstrap without peer id', () => loadConfig({ env: {}, flags: { bootstrap: ['/ip4/10.0.0.1/tcp/4001'] } }), 'bootstrap[0]', /peer id.*--bootstrap/],
    ['name', () => loadConfig({ env: { NOODLE_NAME: 'has space' } }), 'name', /NOODLE_NAME/],
    ['log level', () => loadConfig({ env: {}, flags: { 'log-level': 'loud' } }), 'logLevel', /--log-level/],
    ['integer env', () => loadConfig({ env: { NOODLE_HEALTH_INTERVAL_MS: 'fast' } }), 'health.intervalMs', /integer.*NOODLE_HEALTH_INTERVAL_MS/],
    ['boolean env', () => loadConfig({ env: { NOODLE_MDNS_ENABLED: 'maybe' } }), 'mdns.enabled', /true or false/],
    ['out of range', () => loadConfig({ env: { NOODLE_HEALTH_INTERVAL_MS: '5' } }), 'health.intervalMs', />=100/],
    ['gossip degree', () => loadConfig({ env: { NOODLE_GOSSIP_DEGREE: '40' } }), 'gossip.degree', /<=12.*NOODLE_GOSSIP_DEGREE/],
    ['probe before a beacon is due', () => loadConfig({ env: { NOODLE_MEMBERSHIP_PROBE_AFTER_MS: '900' } }), 'membership.probeAfterMs', /greater than health.intervalMs/],
    ['coordinator priority', () => loadConfig({ env: { NOODLE_COORDINATOR_PRIORITY: '5000' } }), 'coordinator.priority', /<=1000.*NOODLE_COORDINATOR_PRIORITY/],
    ['work item', () => loadConfig({ env: {}, flags: { config: join(dir, 'work.json') } }), 'work[0].accelerator', /work\.json/],
    ['socket path too long', () => loadConfig({ env: {}, flags: { 'data-dir': '/' + 'd'.repeat(120) } }), 'dataDir', /107/]
  ]
  writeFileSync(join(dir, 'work.json'), JSON.stringify({ work: [{ id: 'cam-1', kind: 'camera', accelerator: 'lots' }] }))
  for (const [label, fn, key, message] of cases) {
    const err = configError(fn)
    t.equal(err.key, key, `${label}: names ${key}`)
    t.match(err.message, message, `${label}: says why and where`)
    t.equal(err.code, 'ERR_CONFIG')
  }

  const write = (name: string, text: string) => { const f = join(dir, name); writeFileSync(f, text); return f }
  const unknown = configError(() => loadConfig({ env: {}, flags: { config: write('u.json', '{"mdns":{"enabeld":true}}') } }))
  t.equal(unknown.key, 'mdns.enabeld', 'a misspelt key is refused, not ignored')
  t.match(unknown.message, /not a known setting.*u\.json/)
  t.match(configError(() => loadConfig({ env: {}, flags: { config: write('bad.json', '{nope') } })).message, /not valid JSON/)
  t.match(configError(() => loadConfig({ env: {}, flags: { config: write('arr.json', '[]') } })).message, /JSON object/)
  t.match(configError(() => loadConfig({ env: {}, flags: { config: join(dir, 'missing.json') } })).message, /cannot read/)
  t.equal(configError(() => loadConfig({ env: {}, flags: { config: write('w.json', '{"health":{"intervalMs":"1s"}}') } })).key, 'health.intervalMs')
  const twice = configError(() => loadConfig({ env: {}, flags: { config: write('dup.json', '{"work":[{"id":"a","kind":"model"},{"id":"a","kind":"camera"}]}') } }))
  t.equal(twice.key, 'work', 'work ids must be unique')
  t.match(twice.message, /unique/)
})

t.test('a camera\'s detector: a label file read into the list that travels, and every bad value named', async (t) => {
  const dir = t.testdir()
  const write = (name: string, text: string | Buffer) => { const f = join(dir, name); writeFileSync(f, text); return f }
  const load = (camera: Record<string, unknown>, extra: Record<string, unknown>[] = []) =>
    loadConfig({ env: {}, flags: { config: write('c.json', JSON.stringify({ work: [...extra, { id: 'cam', kind: 'camera', source: 'lavfi:testsrc', model: '/m.onnx', ...camera }] })) } })
  const labels = write('labels.txt', 'person\r\n???\n  parcel  \n')
  t.same(load({ detector: { labels } }).work[0]?.detector, { type: 'auto', labels: ['person', '???', 'parcel'], labelOffset: 0, input: {} },
    'one name a line, trimmed; the path itself never leaves the box')
  t.same(load({ detector: { labels: 'coco91', minScore: 0.4, input: { channels: 'bgr' } } }).work[0]?.detector, { type: 'auto', labels: 'coco91', labelOffset: 0, minScore: 0.4, input: { channels: 'bgr' } })
  const named = (camera: Record<string, unknown>, key: string, message: RegExp, why: string, extra?: Record<string, unknown>[]) => {
    const err = configError(() => load(camera, extra))
    t.same([err.key, err.code], [key, 'ERR_CONFIG'], why)
    t.match(err.message, message, why)
  }
  const at = (extra: number) => `work[${extra}].detector`
  named({ detector: { labels: join(dir, 'none.txt') } }, `${at(0)}.labels`, /cannot read .*none\.txt: ENOENT/, 'a label file that is not there')
  named({ detector: { labels: write('ctl.txt', 'cat\ndo\u001b[2Jg\n') } }, `${at(0)}.labels`, /ctl\.txt \(line 2\): must hold no control characters/, 'a name with a terminal escape')
  named({ detector: { labels: write('long.txt', Array.from({ length: 129 }, (_, i) => `l${i}`).join('\n')) } }, `${at(0)}.labels`, /holds over 128 names/, 'too many names to travel')
  named({ detector: { labels: write('bin.txt', Buffer.from([0x63, 0xff, 0x0a])) } }, `${at(0)}.labels`, /cannot read .*bin\.txt: .*encoded data was not valid/, 'not UTF-8')
  named({ detector: { labels: write('big.txt', 'x\n'.repeat(40_000)) } }, `${at(0)}.labels`, /over 65536 bytes/, 'an absurd file')
  named({ detector: { labels: '/dev/zero' } }, `${at(0)}.labels`, /cannot read \/dev\/zero: it is not a regular file/, 'a device: never read')
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  named({ detector: { labels: fifo } }, `${at(0)}.labels`, /it is not a regular file/, 'a FIFO: refused, not waited on')
  named({ detector: { labels: 'imagenet' } }, `${at(0)}.labels`, /"coco", "coco91", a list of names, or a file path/, 'a label set it does not know')
  named({ detector: { type: 'yolo9000' } }, `${at(0)}.type`, /yolo/, 'a type it does not know')
  named({ detector: { input: { layout: 'chw' } } }, `${at(0)}.input.layout`, /nchw/, 'a layout')
  named({ detector: { treshold: 0.5 } }, `${at(0)}.treshold`, /not a known setting/, 'a misspelt key')
  named({ channels: 'rgb', detector: { input: { channels: 'bgr' } } }, `${at(0)}.input.channels`, /is "bgr" but the camera's channels is "rgb": give one of them/, 'the two spellings of channels disagreeing')
  const square = [[0, 0], [10, 0], [10, 10], [0, 10]]
  t.same(load({ zones: { porch: square }, motion: { enabled: false } }).work[0]?.zones, { porch: square })
  named({ zones: { porch: [[0, 0], [1, 1]] } }, 'work[0].zones.porch', /too small|>=3/i, 'a zone of two corners')
  named({ zones: { porch: [[0, 0], [1, 1], [20_000, 1]] } }, 'work[0].zones.porch[2][0]', /16384/, 'a corner past any frame')
  named({ zones: { '../x': square } }, 'work[0].zones.../x', /letters, digits/, 'a zone name that is not a name')
  named({ zones: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`z${i}`, square])) }, 'work[0].zones', /at most 16 zones/, 'too many zones')
  named({ motion: { refreshS: 0.1 } }, 'work[0].motion.refreshS', /0\.5/, 'a refresh faster than the gate can mean')
  const big = Array.from({ length: 31 }, (_, i) => ({ id: `cam-${i}`, kind: 'camera', source: `rtsp://192.0.2.1/${'x'.repeat(400)}`, model: 'a'.repeat(64) }))
  named({}, 'work', /travels in this box's member record, so at most 12288/, 'more work than a member record carries', big)
})

t.test('events.retentionDays: 30 by default, 1 to 3650', async (t) => {
  t.equal(loadConfig({ env: {} }).events.retentionDays, 30)
  t.equal(loadConfig({ env: { [envVarFor('events.retentionDays')]: '7' } }).events.retentionDays, 7)
  t.equal(configError(() => loadConfig({ env: { [envVarFor('events.retentionDays')]: '0' } })).key, 'events.retentionDays')
})

t.test('mqtt: flags, environment, defaults that follow from them', async (t) => {
  const off = loadConfig({ env: { XDG_STATE_HOME: '/state' }, flags: { name: 'pi-1' } })
  t.equal(off.mqtt.url, undefined)
  t.equal(off.mqtt.embeddedBroker.enabled, false, 'no topics, no url: no MQTT at all')
  t.equal(off.mqtt.clientId, 'noodle-pi-1', 'a stable client id from the node name')
  const embedded = loadConfig({ env: {}, flags: { 'mqtt-topic': ['sensors/#', 'zigbee2mqtt/+'] } })
  t.same(embedded.mqtt.topics, ['sensors/#', 'zigbee2mqtt/+'])
  t.equal(embedded.mqtt.embeddedBroker.enabled, true, 'topics without a url: the embedded broker')
  const remote = loadConfig({ env: { NOODLE_MQTT_TOPICS: 'a/#,b/+/c', NOODLE_MQTT_QOS: '0' }, flags: { 'mqtt-url': 'mqtts://broker.lan:8883' } })
  t.equal(remote.mqtt.url, 'mqtts://broker.lan:8883')
  t.same(remote.mqtt.topics, ['a/#', 'b/+/c'])
  t.equal(remote.mqtt.qos, 0)
  t.equal(remote.mqtt.embeddedBroker.enabled, false, 'a url: no embedded broker unless asked')
  const both = loadConfig({ env: { NOODLE_MQTT_EMBEDDED_BROKER_ENABLED: 'true' }, flags: { 'mqtt-url': 'mqtt://127.0.0.1:1884' } })
  t.equal(both.mqtt.embeddedBroker.enabled, true)
})

t.test('mqtt: bad values name the key', async (t) => {
  t.match(configError(() => loadConfig({ env: {}, flags: { 'mqtt-url': 'http://broker' } })),
    { key: 'mqtt.url', message: /mqtt\.url: must be an mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\/ URL.*\(from --mqtt-url\)/ })
  t.match(configError(() => loadConfig({ env: {}, flags: { 'mqtt-url': 'not a url' } })), { key: 'mqtt.url' })
  t.match(configError(() => loadConfig({ env: {}, flags: { 'mqtt-topic': ['a/#/b'] } })),
    { key: 'mqtt.topics[0]', message: /is not an MQTT topic filter/ })
  t.match(configError(() => loadConfig({ env: {}, flags: { 'mqtt-topic': ['ok', 'a/b+'] } })), { key: 'mqtt.topics[1]' })
  const dir = t.testdir({
    'rule.json': JSON.stringify({ mqtt: { topicParsing: [{ topic: 'sensors/+/+', levels: '_/sensor' }] } }),
    'base.json': JSON.stringify({ mqtt: { baseTopic: 'noodle/' } }),
    'qos.json': JSON.stringify({ mqtt: { qos: 2 } })
  })
  t.match(configError(() => loadConfig({ env: {}, flags: { config: join(dir, 'rule.json') } })),
    { key: 'mqtt.topicParsing[0].levels', message: /levels has 2 entries but topic has 3 levels/ })
  t.match(configError(() => loadConfig({ env: {}, flags: { config: join(dir, 'base.json') } })), { key: 'mqtt.baseTopic' })
  t.match(configError(() => loadConfig({ env: {}, flags: { config: join(dir, 'qos.json') } })), { key: 'mqtt.qos' })
})

t.test('bootstrap addresses name their peers by the id they end in', async (t) => {
  t.same(bootstrapPeerIds([`/ip4/10.0.0.1/tcp/4001/p2p/${PEER}`, `/dns4/pi.local/tcp/4001/p2p/${PEER}`]), [PEER, PEER])
})
