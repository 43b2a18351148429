import t from 'tap'
import { DEAD_LETTER_TEXT_CHARS, HOUR_MS, MINUTE_MS, sensorKey, SensorStore } from '../../agent/ingest/sensor-store.ts'
import type { IngestBatch } from '../../agent/ingest/sensor-store.ts'
import { openSensorStore, RETENTION } from '../helpers/sensor-store.ts'

const T0 = Date.parse('2026-11-28T12:00:00Z')
const open = openSensorStore

function batch (readings: IngestBatch['readings'], extra: Partial<IngestBatch> = {}): IngestBatch {
  return { readings, deadLetters: [], received: readings.length, stored: readings.length, rejected: 0, lastSeen: T0, ...extra }
}

const pruneAll = async (sensors: SensorStore, now: number) => await new Promise<number>((resolve) => { sensors.pruneAll(resolve, () => now) })

t.test('one reading timed far ahead, stored first, does not stall pruning of the rows behind it', async (t) => {
  const { sensors } = open(t)
  const future = T0 + 10 * 365 * 24 * HOUR_MS
  sensors.commit(batch([{ sensor: 'ahead', metric: 'm', ts: future, value: 1 }]))
  sensors.commit(batch(Array.from({ length: 4_500 }, (_, i) => ({ sensor: 's', metric: 'm', ts: T0 + i, value: i }))))
  const now = T0 + 3 * HOUR_MS
  sensors.commit(batch([{ sensor: 's', metric: 'm', ts: now - 1_000, value: -1 }], { lastSeen: now }))
  const deleted = await pruneAll(sensors, now)
  t.same(sensors.readings('s', 'm').map((r) => r.value), [-1], 'every expired reading is gone')
  t.same(sensors.readings('ahead', 'm').map((r) => r.ts), [future], 'the one ahead stays until it expires')
  t.equal(deleted, 4_500 + 1, 'the readings, and the minute rollup of the old ones')
})

t.test('a sensor silent for the longest retention is forgotten; one still sending stays', async (t) => {
  const { sensors } = open(t)
  sensors.commit(batch([{ sensor: 'gone', metric: 'm', ts: T0, value: 1 }], { lastSeen: T0 }))
  const now = T0 + RETENTION.hourMs + MINUTE_MS
  sensors.commit(batch([{ sensor: 'here', metric: 'm', ts: now, value: 2 }], { lastSeen: now }))
  await pruneAll(sensors, now)
  t.same(sensors.sensors(now).map((s) => s.sensor), ['here'])
  t.same(sensors.rollups(HOUR_MS, 'gone', 'm'), [], 'none of its data was left either')
})

t.test('new sensor metrics are admitted up to the cap; a prune that forgets silent ones makes room again', async (t) => {
  const { sensors } = openSensorStore(t, 2)
  // Two readings: not a sensor seen only once, which would be forgotten to make room.
  sensors.commit(batch([{ sensor: 'old', metric: 'm', ts: T0, value: 1 }, { sensor: 'old', metric: 'm', ts: T0, value: 2 }], { lastSeen: T0 }))
  const at = (sensor: string, metric = 'm') => ({ sensor, metric })
  t.equal(sensors.admits([at('old'), at('new')], T0), null, 'one known and one new: two')
  t.match(sensors.admits([at('third')], T0), /^a new sensor metric, over the 2 the store keeps \(mqtt\.maxSensors\)/, 'a third is refused')
  t.match(sensors.admits([at('old', 'other')], T0 + 2_000), /over the 2/, 'a new metric of a known sensor is a new one too')
  t.equal(sensors.admits([at('new'), at('old')], T0), null, 'known ones still are')
  const now = T0 + RETENTION.hourMs + MINUTE_MS
  sensors.commit(batch([{ sensor: 'new', metric: 'm', ts: now, value: 2 }, { sensor: 'new', metric: 'm', ts: now, value: 3 }], { lastSeen: now }))
  await pruneAll(sensors, now)
  t.equal(sensors.admits([at('third')], now), null, 'once "old" is forgotten, there is room')
  t.equal(sensors.sensorLimit, 2)
})

t.test('at the cap, sensor metrics seen only once or silent for the raw retention make room for new ones', async (t) => {
  const { store, sensors } = openSensorStore(t, 3)
  const twice = (sensor: string, at: number) => [{ sensor, metric: 'm', ts: at, value: 1 }, { sensor, metric: 'm', ts: at, value: 2 }]
  sensors.commit(batch(twice('steady', T0), { lastSeen: T0 }))
  sensors.commit(batch([{ sensor: 'once', metric: 'm', ts: T0, value: 1 }], { lastSeen: T0 + 1 }))
  sensors.commit(batch(twice('quiet', T0 - 2 * HOUR_MS), { lastSeen: T0 - 2 * HOUR_MS }))
  const at = (sensor: string) => ({ sensor, metric: 'm' })
  t.equal(sensors.admits([at('a')], T0), null, 'room is made for one…')
  t.same(sensors.sensors(T0).map((s) => s.sensor), ['once', 'steady'], '…by forgetting the longest silent of those: "quiet"')
  t.match(sensors.admits([at('x'), at('y')], T0), /none seen only once or silent/, 'two new, one to forget: refused…')
  t.same(sensors.sensors(T0).map((s) => s.sensor), ['once', 'steady'], '…and nothing forgotten')
  t.equal(sensors.admits([at('b')], T0 + 1_000), null, 'a second later, one new')
  t.same(sensors.sensors(T0).map((s) => s.sensor), ['steady'], '"once" goes next (a and b are not stored yet)')
  t.match(sensors.admits([at('c')], T0 + 1_000), /none seen only once or silent/, 'nothing left to forget: refused')
  t.match(sensors.admits([at('c')], T0 + 1_999), /over the 3/, 'and not tried again within a second')
  t.equal(sensors.readings('quiet', 'm').length, 2, 'a forgotten sensor\'s readings stay until retention takes them')
  sensors.commit(batch(twice('a', T0), { lastSeen: T0 }))
  store.close()
  t.match(sensors.admits([at('d')], T0 + 2_000), /over the 3/, 'a store that fails to forget refuses, never throws')
})

t.test('once the store is half full, one message brings at most 32 new sensor metrics', async (t) => {
  const { sensors } = openSensorStore(t, 128)
  const metrics = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ sensor: 's', metric: `${prefix}${i}` }))
  t.equal(sensors.admits(metrics(40, 'g'), T0), null, 'a gateway\'s first message names 40: there is room')
  t.equal(sensors.admits(metrics(32, 'a'), T0), null, '32')
  t.equal(sensors.admits([...metrics(32, 'a'), ...metrics(32, 'b')], T0), null, '32 known and 32 new')
  t.equal(sensors.admits(metrics(33, 'c'), T0), '33 new sensor metrics in one message, over the 32 one may bring')
})

t.test('sensor metrics are keyed so that no two pairs of names share a key', async (t) => {
  const { sensors } = open(t)
  sensors.commit(batch([{ sensor: 'a', metric: 'b\u0000c', ts: T0, value: 1 }, { sensor: 'a\u0000b', metric: 'c', ts: T0, value: 100 }]))
  t.same(sensors.sensors(T0).map((s) => [s.sensor, s.metric, s.value, s.count]), [['a', 'b\u0000c', 1, 1], ['a\u0000b', 'c', 100, 1]])
  t.same(sensors.rollups(MINUTE_MS, 'a', 'b\u0000c').map((r) => [r.count, r.last]), [[1, 1]], 'each its own rollup')
  t.equal(sensorKey('a', 'b\u0000c') === sensorKey('a\u0000b', 'c'), false)
})

t.test('dead letters are capped in number, and each in size (topic and detail too)', async (t) => {
  const { sensors } = open(t)
  const long = 't/'.repeat(20_000)
  sensors.commit(batch([], { deadLetters: [{ at: T0, topic: long, reason: 'bad-json', detail: 'd'.repeat(5_000), size: 3, bytes: Buffer.from('abc') }], received: 1, stored: 0, rejected: 1 }))
  const [letter] = sensors.deadLetters()
  t.equal(letter?.topic, long.slice(0, DEAD_LETTER_TEXT_CHARS))
  t.equal(letter?.detail.length, DEAD_LETTER_TEXT_CHARS)
  t.match(sensors.deadLetterViews(), [{ at: new Date(T0).toISOString(), reason: 'bad-json', payload: 'abc', size: 3 }])
})

t.test('every prune query finds its rows through an index', async (t) => {
  const { db, sensors } = open(t)
  const statements = (sensors as unknown as { statements: Record<string, { source: string }> }).statements
  const plan = (name: string, ...params: number[]) =>
    db.prepare<number[], { detail: string }>(`EXPLAIN QUERY PLAN ${statements[name]?.source}`).all(...params).map((r) => r.detail).join('; ')
  t.match(plan('pruneReadings', T0, 10), /SEARCH readings USING (COVERING )?INDEX readings_ts \(ts<\?\)/)
  t.match(plan('pruneSensors', T0, 10), /SEARCH sensors USING (COVERING )?INDEX sensors_last_seen \(last_seen<\?\)/)
  t.match(plan('pruneRollups', MINUTE_MS, T0, 10), /SEARCH rollups USING (COVERING )?INDEX rollups_start \(period=\? AND start<\?\)/)
  t.match(plan('pruneDeadLetters', 10), /SEARCH dead_letters USING INTEGER PRIMARY KEY \(rowid<\?\)/)
  t.notMatch([plan('pruneReadings', T0, 10), plan('pruneSensors', T0, 10), plan('pruneRollups', MINUTE_MS, T0, 10)].join('; '), /SCAN (readings|sensors|rollups)\b/, 'no table scan')
})

t.test('an ingest commit is synced (synchronous = FULL); the agent\'s other writes keep NORMAL', async (t) => {
  const { db, sensors } = open(t)
  const inner = (sensors as unknown as { statements: { commit: (b: IngestBatch) => void } }).statements
  const commitTx = inner.commit
  const seen: number[] = []
  inner.commit = (b) => { seen.push(db.pragma('synchronous', { simple: true }) as number); commitTx(b) }
  sensors.commit(batch([{ sensor: 's', metric: 'm', ts: T0, value: 1 }]))
  t.same(seen, [2], 'FULL (2) while committing')
  t.equal(db.pragma('synchronous', { simple: true }), 1, 'NORMAL (1) after')
  inner.commit = () => { throw new Error('disk full') }
  t.throws(() => { sensors.commit(batch([])) }, /disk full/)
  t.equal(db.pragma('synchronous', { simple: true }), 1, 'NORMAL after a failed commit too')
})
