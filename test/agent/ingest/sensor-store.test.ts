import { EventEmitter } from 'node:events'
import t from 'tap'
import { Ingest } from '../../../agent/ingest/ingest.ts'
import { createLogger } from '../../../common/logger.ts'
import type { InboundMessage, MqttSession } from '../../../agent/ingest/mqtt-session.ts'
import { HOUR_MS, MINUTE_MS } from '../../../agent/ingest/sensor-store.ts'
import type { IngestBatch } from '../../../agent/ingest/sensor-store.ts'
import { openSensorStore } from '../../helpers/sensor-store.ts'
import { PayloadParser } from '../../../protocols/sensor-payload.ts'

const log = createLogger('silent')
const T0 = Date.parse('2026-11-28T12:00:00Z')
const open = openSensorStore

function batch (readings: IngestBatch['readings'], extra: Partial<IngestBatch> = {}): IngestBatch {
  return { readings, deadLetters: [], received: readings.length, stored: readings.length, rejected: 0, lastSeen: T0, ...extra }
}

t.test('a batch writes readings, rollups, the latest value and the totals in one go', async (t) => {
  const { sensors } = open(t)
  sensors.commit(batch([
    { sensor: 's1', metric: 'temp', ts: T0 + 1_000, value: 20 },
    { sensor: 's1', metric: 'temp', ts: T0 + 2_000, value: 24 },
    { sensor: 's1', metric: 'temp', ts: T0 + 61_000, value: 22 }
  ]))
  sensors.commit(batch([{ sensor: 's1', metric: 'temp', ts: T0 + 500, value: 10 }], { received: 2, rejected: 1, lastSeen: T0 + 2_000 }))
  t.same(sensors.rollups(MINUTE_MS, 's1', 'temp'), [
    { start: T0, count: 3, min: 10, max: 24, last: 24, mean: 18 },
    { start: T0 + MINUTE_MS, count: 1, min: 22, max: 22, last: 22, mean: 22 }
  ], 'a late reading joins its minute without becoming its last')
  t.same(sensors.rollups(HOUR_MS, 's1', 'temp'), [{ start: T0, count: 4, min: 10, max: 24, last: 22, mean: 19 }])
  const [latest] = sensors.sensors(T0 + 120_000)
  t.match(latest, { sensor: 's1', metric: 'temp', value: 22, ts: T0 + 61_000, lastSeen: T0 + 2_000, count: 4 })
  t.equal(latest?.ratePerS, 1.5, 'a new sensor: 3 intervals between its 4 readings, over the 2 s it has been seen')
  t.equal(sensors.sensors(T0 + 4.5 * MINUTE_MS)[0]?.ratePerS, Math.round(4 / 270 * 100) / 100, 'a known one: readings over the window (here 4.5 min)')
  t.equal(sensors.sensors(T0 + 10 * MINUTE_MS)[0]?.ratePerS, 0, 'nothing in the last 5 minutes: 0/s')
  t.same(sensors.totals(), { received: 5, stored: 4, rejected: 1 })
  t.same(sensors.readings('s1', 'temp', T0 + 1_500).map((r) => r.value), [24, 22])
})

t.test('pruning drops expired readings and rollups step by step, and caps the dead letter', async (t) => {
  const { sensors } = open(t)
  const now = T0 + 3 * HOUR_MS
  const old = Array.from({ length: 4_500 }, (_, i) => ({ sensor: 's', metric: 'm', ts: T0 + i, value: i }))
  sensors.commit(batch(old))
  sensors.commit(batch([{ sensor: 's', metric: 'm', ts: now - 1_000, value: -1 }]))
  const letters = Array.from({ length: 10_005 }, (_, i) => ({ at: T0, topic: 't', reason: 'bad-json', detail: '', size: 1, bytes: Buffer.from([i % 256]) }))
  sensors.commit(batch([], { deadLetters: letters, received: letters.length, stored: 0, rejected: letters.length }))
  t.equal(sensors.pruneStep(now), 2_000 + 1 + 5, 'one step: 2000 readings, the old minute rollup, the 5 oldest dead letters')
  t.equal(sensors.deadLetterCount(), 10_000)
  const deleted = await new Promise<number>((resolve) => { sensors.pruneAll(resolve, () => now) })
  t.equal(deleted, 2_500, 'the rest, in later steps')
  t.same(sensors.readings('s', 'm').map((r) => r.value), [-1], 'the fresh reading stays')
  t.same(sensors.rollups(HOUR_MS, 's', 'm').map((r) => r.count), [4_500, 1], 'hour rollups are kept longer')
  t.equal(sensors.deadLetters(1)[0]?.reason, 'bad-json')
})

/** A stand-in for the MQTT session: what Ingest uses of it. */
class FakeSession extends EventEmitter {
  connected = true
  broker = 'mqtt://127.0.0.1:1883'
  acked: Array<[number, number[]]> = []
  paused = false
  ack (connection: number, ids: readonly number[]): void { this.acked.push([connection, [...ids]]) }
  pause (): void { this.paused = true }
  resume (): void { this.paused = false }
}

function message (topic: string, payload: string, messageId: number | undefined, connection = 1): InboundMessage {
  return { topic, payload: Buffer.from(payload), qos: messageId === undefined ? 0 : 1, messageId, connection }
}

t.test('ingest acknowledges a batch only after it is committed, and holds it while storing fails', async (t) => {
  const { sensors } = open(t)
  const session = new FakeSession()
  const parser = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 64, topicRules: [], maxClockSkewMs: 600_000 })
  const ingest = new Ingest({ session: session as unknown as MqttSession, store: sensors, parser, log, topics: ['#'], limits: { maxMessages: 3, maxDelayMs: 10_000 } })
  ingest.start()
  t.teardown(() => { ingest.stop() })
  session.emit('message', message('a', '1', 11))
  session.emit('message', message('a', 'oops', 12))
  t.same(session.acked, [], 'nothing acknowledged before the commit')
  session.emit('message', message('a', '3', 13))
  t.same(session.acked, [[1, [11, 12, 13]]], 'the full batch is committed, then acknowledged, the bad message too')
  t.same(sensors.totals(), { received: 3, stored: 2, rejected: 1 })

  session.emit('message', message('a', '4', 14))
  session.emit('message', message('b', '5', 1, 2))
  t.same(session.acked.at(-1), [1, [14]], 'a new connection closes the batch of the old one')
  ingest.flush()
  t.same(session.acked.at(-1), [2, [1]])

  const commit = sensors.commit.bind(sensors)
  let failures = 1
  sensors.commit = (b) => { if (failures-- > 0) throw new Error('disk full'); commit(b) }
  session.emit('message', message('a', '6', 2, 2))
  ingest.flush()
  t.ok(session.paused, 'a failed commit stops reading')
  t.same(session.acked.at(-1), [2, [1]], 'and acknowledges nothing')
  await new Promise((resolve) => setTimeout(resolve, 1_100))
  t.notOk(session.paused, 'the retry stores it and reading resumes')
  t.same(session.acked.at(-1), [2, [2]])

  session.emit('message', message('$SYS/broker/publish/messages/dropped', '17', undefined, 2))
  session.emit('message', message('$SYS/broker/uptime', '5 seconds', undefined, 2))
  t.equal(ingest.stats().brokerDropped, 17, 'the broker\'s drops are read from $SYS, not stored')
  t.match(ingest.status(), { received: 6, stored: 5, rejected: 1, deadLetter: 1, connected: true, broker: 'mqtt://127.0.0.1:1883' })
})
