import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { AnnouncedEvents, CameraEvents, CameraEventStore, MAX_ANNOUNCED_PER_MEMBER, QUIET_AFTER_MS } from '../../media/camera-events.ts'
import type { CameraEvent, CameraEventMessage } from '../../protocols/media.ts'

const log = createLogger('silent')
const event = (id: number, o: Partial<CameraEvent> = {}): CameraEvent =>
  ({ id: `${id.toString(36)}-0000abcd`, camera: 'cam', label: 'car', score: 0.5, box: [0, 0, 10, 10], zones: [], start: 1_000, end: null, ...o })
const message = (e: CameraEvent, type: CameraEventMessage['type'] = 'new'): CameraEventMessage => ({ v: 1, type, event: e })

function setup (t: { testdir: () => string, teardown: (fn: () => void) => void }) {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const events = new CameraEventStore({ store })
  let now = 10_000
  const refused: string[] = []
  const announced = new AnnouncedEvents({
    store: events,
    self: 'me',
    sender: (peer) => peer === 'stranger' ? undefined : { name: `node-${peer}`, running: ['cam'] },
    refuse: (reason) => { refused.push(reason) },
    now: () => now
  })
  return { store, events, announced, refused, clock: { set: (ms: number) => { now = ms } } }
}

/**
 * CameraEvents of node `me`, started, publishing to a broker that takes what it is sent only while `connected`;
 * `mqtt` lists what it took, as `topic=payload (retained)`.
 */
function withBroker (t: { teardown: (fn: () => void) => void }, events: CameraEventStore, now?: () => number) {
  const broker = { connected: false }
  const mqtt: string[] = []
  const camera = new CameraEvents({
    store: events,
    toMesh: async () => {},
    toMqtt: (topic, payload, retain) => { if (broker.connected) mqtt.push(`${topic}=${payload}${retain ? ' (retained)' : ''}`); return broker.connected },
    baseTopic: 'noodle',
    node: 'me',
    peer: 'me',
    log,
    ...(now === undefined ? {} : { now })
  })
  camera.start()
  t.teardown(() => { camera.stop() })
  return { camera, broker, mqtt }
}

t.test('an event is its member\'s: another cannot change or end it by reusing its id', async (t) => {
  const { events, announced } = setup(t)
  announced.take(message(event(1)), 'a')
  announced.take(message(event(1, { label: 'dog', end: 2_000 }), 'end'), 'b')
  t.same(events.list({}).map((e) => [e.node, e.label, e.end]).sort(), [['node-a', 'car', null], ['node-b', 'dog', '1970-01-01T00:00:02.000Z']], 'two events, one each')
  announced.take(message(event(1, { end: 3_000, score: 0.9 }), 'end'), 'a')
  announced.take(message(event(1, { end: null, score: 0.1 }), 'update'), 'a')
  t.match(events.list({ label: 'car' }), [{ score: 0.9, end: '1970-01-01T00:00:03.000Z' }], 'an ended event stays ended')
})

t.test('a list without a limit is the newest 100', async (t) => {
  const { events } = setup(t)
  for (let i = 0; i < 120; i++) events.put(event(i, { start: 1_000 + i }), 'me', 'me')
  const listed = events.list({})
  t.same({ count: listed.length, newest: listed[0]?.start, oldest: listed.at(-1)?.start },
    { count: 100, newest: new Date(1_119).toISOString(), oldest: new Date(1_020).toISOString() }, 'newest first')
  t.equal(events.list({ limit: 120 }).length, 120)
})

t.test('refused: strangers, cameras not run, times far ahead, floods; counted by reason', async (t) => {
  const { events, announced, refused } = setup(t)
  announced.take(message(event(1)), 'stranger')
  announced.take(message(event(2, { camera: 'other' })), 'a')
  announced.take(message(event(3, { start: 10_000 + 61_000 })), 'a')
  announced.take(message(event(4, { end: 10_000 + 61_000 })), 'a')
  for (let i = 0; i < 205; i++) announced.take(message(event(100 + i)), 'a')
  t.same(refused, ['not-running', 'not-running', 'clock', 'clock', ...Array(5).fill('flood')])
  t.equal(events.list({ limit: 1000 }).length, 200)
})

t.test('one member keeps at most MAX_ANNOUNCED_PER_MEMBER events here, its newest; the others\' are untouched', async (t) => {
  const { events, announced, clock } = setup(t)
  announced.take(message(event(1)), 'b')
  for (let i = 0; i < MAX_ANNOUNCED_PER_MEMBER + 300; i++) {
    clock.set(10_000 + Math.floor(i / 200) * 10_000) // a new window each 200
    announced.take(message(event(1_000 + i)), 'a')
  }
  const kept = events.list({ limit: 1000 }).length
  const db = (events as unknown as { store: Store }).store.database
  const perPeer = db.prepare('SELECT peer, count(*) AS n FROM camera_events GROUP BY peer ORDER BY peer').all()
  t.same(perPeer, [{ peer: 'a', n: MAX_ANNOUNCED_PER_MEMBER }, { peer: 'b', n: 1 }])
  t.equal(kept, 1000)
  t.equal((db.prepare("SELECT min(id) AS id FROM camera_events WHERE peer = 'a'").get() as { id: string }).id, (1_300).toString(36) + '-0000abcd', 'the oldest went')
})

t.test('open events gone quiet are ended; this box\'s own left open by a crash are ended at start', async (t) => {
  const { events, announced, clock } = setup(t)
  announced.take(message(event(1)), 'a')
  events.put(event(2), 'me', 'me', 10_000)
  clock.set(10_000 + QUIET_AFTER_MS + 1)
  events.closeQuiet('me', 10_000 + 1)
  t.same(events.list({}).map((e) => [e.node, e.end]).sort(), [['me', null], ['node-a', '1970-01-01T00:00:10.000Z']], 'at when it was last written')
  events.closeOwn('me')
  t.same(events.list({ camera: 'cam' }).every((e) => e.end !== null), true)
  t.same(events.ownLabels('me'), [{ camera: 'cam', label: 'car' }], 'the cameras and labels it had events of, ended or not')
  t.same(events.ownLabels('a'), [{ camera: 'cam', label: 'car' }])
  t.same(events.ownLabels('nobody'), [])
})

t.test('at start, every count this node had is sent again: 0, or what is in view by then; a 0 not taken goes again', async (t) => {
  const { events } = setup(t)
  // What an earlier run left: an event still open (killed), and ended ones.
  events.put(event(1), 'me', 'me')
  events.put(event(2, { camera: 'yard', label: 'dog', end: 2_000 }), 'me', 'me')
  // Ended, but its 0 may never have reached the broker (stopped, or the camera taken away, while it was away).
  events.put(event(4, { camera: 'gate', label: 'person', end: 2_000 }), 'me', 'me')
  events.put(event(3, { camera: 'elsewhere', label: 'cat' }), 'other', 'other')
  const { camera, broker, mqtt } = withBroker(t, events)
  t.same(events.list({ camera: 'cam' }).map((e) => e.end !== null), [true], 'the open one ended')
  // The yard's dog is in view again before the broker comes back.
  const dog = { label: 'dog', score: 0.9, box: [0, 0, 10, 10] as [number, number, number, number] }
  for (const at of [0, 200]) camera.observe({ camera: 'yard', at: Date.now() + at, latencyMs: 1, detections: [dog] }, { fps: 5 })
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  t.same(mqtt, [], 'the broker is away: nothing taken')
  broker.connected = true
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  t.same(mqtt.filter((m) => !m.includes('/events=')).sort(), ['noodle/me/cam/car=0 (retained)', 'noodle/me/gate/person=0 (retained)', 'noodle/me/yard/dog=1 (retained)'], 'each once, another member\'s not')
})

t.test('a stalled camera ends its events; a retained count the broker did not take goes again', async (t) => {
  const { events } = setup(t)
  let now = 0
  const { camera, broker, mqtt } = withBroker(t, events, () => now)
  const seen = { label: 'car', score: 0.9, box: [0, 0, 10, 10] as [number, number, number, number] }
  camera.observe({ camera: 'cam', at: 0, latencyMs: 1, detections: [seen] }, { fps: 5 })
  camera.observe({ camera: 'cam', at: 200, latencyMs: 1, detections: [seen] }, { fps: 5 })
  t.same(mqtt, [], 'the broker is away: nothing taken')
  broker.connected = true
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  t.same(mqtt.filter((m) => m.includes('/cam/')), ['noodle/me/cam/car=1 (retained)'], 'the count goes once it can')
  now = 20_000 // no result for longer than the camera's stale time (2.5 refreshS: 12.5 s)
  await new Promise((resolve) => setTimeout(resolve, 1_200))
  t.match(events.list({}), [{ end: '1970-01-01T00:00:00.200Z' }], 'ended at when it was last seen')
  t.same(mqtt.filter((m) => m.includes('/cam/')), ['noodle/me/cam/car=1 (retained)', 'noodle/me/cam/car=0 (retained)'])
})
