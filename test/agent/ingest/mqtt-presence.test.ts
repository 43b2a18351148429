import { EventEmitter } from 'node:events'
import t from 'tap'
import { MqttPresence, presenceTopics } from '../../../agent/ingest/mqtt-presence.ts'
import type { MqttSession, SessionEvents } from '../../../agent/ingest/mqtt-session.ts'
import { createLogger } from '../../../common/logger.ts'
import { eventually } from '../../helpers/eventually.ts'

// Unit tests with a fake session: what the box says about itself on MQTT, on which topics, retained or not.

interface Published { topic: string, payload: string, retain: boolean }

/** The members of MqttSession that presence uses; every publish is recorded, connected or not. */
class FakeSession extends EventEmitter<SessionEvents> {
  connected = false
  readonly published: Published[] = []

  publish (topic: string, payload: string | Buffer, options: { retain?: boolean } = {}): boolean {
    this.published.push({ topic, payload: payload.toString(), retain: options.retain ?? false })
    return this.connected
  }

  connect (): void {
    this.connected = true
    this.emit('connected', { connection: 1, sessionPresent: false })
  }

  /** What was published since the last take, and forgets it. */
  take (): Published[] {
    return this.published.splice(0)
  }
}

const HOUR = 3_600_000

function setup (t: { teardown: (fn: () => void) => void }, o: { name?: string, intervalMs?: number, homeAssistant?: boolean, describe?: () => Record<string, unknown> } = {}) {
  const session = new FakeSession()
  const logged: Array<Record<string, unknown>> = []
  let seq = 0
  const presence = new MqttPresence({
    session: session as unknown as MqttSession,
    log: createLogger('warn', { write: (line: string) => { logged.push(JSON.parse(line) as Record<string, unknown>) } }),
    name: o.name ?? 'box-1',
    version: '1.2.3',
    baseTopic: 'noodle',
    intervalMs: o.intervalMs ?? HOUR,
    homeAssistant: o.homeAssistant ?? false,
    describe: o.describe ?? (() => ({ seq: ++seq, cpuPct: 12 }))
  })
  let stopped = false
  t.teardown(() => { if (!stopped) presence.stop() })
  return { session, presence, logged, stop: () => { stopped = true; presence.stop() } }
}

t.test('presence topics: <base>/<name>/availability and <base>/<name>/health', async (t) => {
  t.same(presenceTopics('noodle', 'box-1'), { availability: 'noodle/box-1/availability', health: 'noodle/box-1/health' })
})

t.test('once connected: online (retained), then the health figures (not retained); on every reconnect again', async (t) => {
  const { session, presence } = setup(t)
  presence.start()
  t.same(session.take(), [], 'nothing before the session is connected')
  session.connect()
  t.same(session.take(), [
    { topic: 'noodle/box-1/availability', payload: 'online', retain: true },
    { topic: 'noodle/box-1/health', payload: '{"seq":1,"cpuPct":12}', retain: false }
  ])
  session.connected = false
  session.connect()
  t.same(session.take(), [
    { topic: 'noodle/box-1/availability', payload: 'online', retain: true },
    { topic: 'noodle/box-1/health', payload: '{"seq":2,"cpuPct":12}', retain: false }
  ], 'a new connection (a restarted broker forgets what was not retained) hears it again')
})

t.test('a session already connected at start hears it at once', async (t) => {
  const { session, presence } = setup(t)
  session.connected = true
  presence.start()
  t.same(session.take().map((p) => p.topic), ['noodle/box-1/availability', 'noodle/box-1/health'])
})

t.test('the health figures every intervalMs, fresh each time', async (t) => {
  const { session, presence, stop } = setup(t, { intervalMs: 20 })
  session.connected = true
  presence.start()
  const health = () => session.published.filter((p) => p.topic === 'noodle/box-1/health').map((p) => p.payload).slice(0, 4)
  const expected = [1, 2, 3, 4].map((seq) => `{"seq":${seq},"cpuPct":12}`)
  t.same(await eventually(health, expected, { timeoutMs: 5_000, intervalMs: 10 }), expected, 'on start, then on each tick')
  stop()
  const count = session.published.length
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.same(session.published.slice(count - 1), [{ topic: 'noodle/box-1/availability', payload: 'offline', retain: true }],
    'stop says offline (retained) and the ticks end')
})

t.test('stop: offline, retained, and a later connection hears nothing more', async (t) => {
  const { session, presence, stop } = setup(t, { homeAssistant: true })
  presence.start()
  stop()
  t.same(session.take(), [{ topic: 'noodle/box-1/availability', payload: 'offline', retain: true }])
  session.connect()
  t.same(session.take(), [], 'the connected listener is gone')
})

t.test('health that cannot be gathered is not published, and is logged', async (t) => {
  const { session, presence, logged } = setup(t, { describe: () => { throw new Error('no /proc') } })
  session.connected = true
  presence.start()
  t.same(session.take(), [{ topic: 'noodle/box-1/availability', payload: 'online', retain: true }], 'online, but no health')
  t.match(logged, [{ level: 40, msg: 'mqtt: could not gather health to publish', err: { message: 'no /proc' } }])
})

t.test('with homeAssistant: a device with four sensors, discovery configs retained, announced on each connection', async (t) => {
  const { session, presence } = setup(t, { name: 'shed box/2', homeAssistant: true })
  presence.start()
  session.connect()
  const published = session.take()
  const id = 'noodle_shed_box_2'
  t.same(published.map((p) => [p.topic, p.retain]), [
    ['noodle/shed box/2/availability', true],
    [`homeassistant/sensor/${id}/cpu/config`, true],
    [`homeassistant/sensor/${id}/memory/config`, true],
    [`homeassistant/sensor/${id}/members/config`, true],
    [`homeassistant/sensor/${id}/ingest_rate/config`, true],
    ['noodle/shed box/2/health', false]
  ], 'the object id keeps letters, digits, _ and - of the name')
  const device = { identifiers: [id], name: 'Noodle shed box/2', manufacturer: 'Noodle', sw_version: '1.2.3' }
  const configs = published.slice(1, 5).map((p) => JSON.parse(p.payload) as unknown)
  t.same(configs[0], {
    name: 'CPU',
    unique_id: `${id}_cpu`,
    state_topic: 'noodle/shed box/2/health',
    value_template: '{{ value_json.cpuPct }}',
    availability_topic: 'noodle/shed box/2/availability',
    device,
    unit_of_measurement: '%'
  })
  t.same(configs.map((c) => (c as { value_template: string }).value_template),
    ['{{ value_json.cpuPct }}', '{{ value_json.memUsedPct }}', '{{ value_json.members }}', '{{ value_json.ingest.perS }}'])
  t.same(configs.map((c) => (c as { unit_of_measurement?: string }).unit_of_measurement), ['%', '%', undefined, 'msg/s'],
    'mesh members have no unit')
  session.connected = false
  session.connect()
  t.equal(session.take().filter((p) => p.topic.startsWith('homeassistant/')).length, 4, 'announced again on a new connection')
})
