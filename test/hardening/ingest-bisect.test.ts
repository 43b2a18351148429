import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { Ingest, PARSE_FAILED, STORE_FAILED } from '../../agent/ingest/ingest.ts'
import { DiskStatus } from '../../agent/membership/health.ts'
import { createLogger } from '../../common/logger.ts'
import type { InboundMessage, MqttSession } from '../../agent/ingest/mqtt-session.ts'
import { commitFailureOf, HOUR_MS, SensorStore } from '../../agent/ingest/sensor-store.ts'
import type { IngestBatch } from '../../agent/ingest/sensor-store.ts'
import { Store } from '../../agent/store/store.ts'
import { PayloadParser } from '../../protocols/sensor-payload.ts'
import { waitFor } from '../helpers/agents.ts'

const log = createLogger('silent')
const RETENTION = { rawMs: HOUR_MS, minuteMs: 2 * HOUR_MS, hourMs: 48 * HOUR_MS }

/** A stand-in for the MQTT session: what Ingest uses of it. */
class FakeSession extends EventEmitter {
  connected = true
  broker = 'mqtt://127.0.0.1:1883'
  acked: Array<[number, number[]]> = []
  paused = false
  ack (connection: number, ids: readonly number[]): void { if (ids.length > 0) this.acked.push([connection, [...ids]]) }
  pause (): void { this.paused = true }
  resume (): void { this.paused = false }
  /** Every id acknowledged, in order. */
  ids (): number[] { return this.acked.flatMap(([, ids]) => ids) }
}

const sqliteError = (code: string, message: string) => new Database.SqliteError(message, code)

/** A real sensor store whose commits fail, as told, for batches holding a reading of the value `poison`. */
function setUp (t: { testdir: () => string, teardown: (fn: () => void) => void }, maxMessages = 8) {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const sensors = new SensorStore({ db: store.database, log, retention: RETENTION })
  const commit = sensors.commit.bind(sensors)
  const attempts: number[] = []
  let storeFails = 0
  const fake = {
    poison: -1,
    /** Dead letters of this topic fail their commit as the data's fault too. */
    undeadTopic: '',
    /** The next commits this many times fail as the store's fault (disk full). */
    failStore: (n: number) => { storeFails = n },
    attempts
  }
  sensors.commit = (batch: IngestBatch) => {
    attempts.push(batch.received)
    if (storeFails > 0) { storeFails--; throw sqliteError('SQLITE_FULL', 'database or disk is full') }
    if (batch.readings.some((r) => r.value === fake.poison)) throw sqliteError('SQLITE_CONSTRAINT_NOTNULL', 'NOT NULL constraint failed: readings.ts')
    if (batch.deadLetters.some((d) => d.topic === fake.undeadTopic)) throw sqliteError('SQLITE_CONSTRAINT_CHECK', 'CHECK constraint failed: dead_letters')
    commit(batch)
  }
  const session = new FakeSession()
  const parser = new PayloadParser({ valueFields: ['value'], maxPayloadBytes: 64, topicRules: [], maxClockSkewMs: 600_000 })
  const disk = new DiskStatus({ dataDir: t.testdir(), log })
  const ingest = new Ingest({ session: session as unknown as MqttSession, store: sensors, parser, log, topics: ['#'], limits: { maxMessages, maxDelayMs: 10_000 }, disk })
  ingest.start()
  t.teardown(() => { ingest.stop() })
  return { sensors, session, ingest, fake, disk }
}

function message (topic: string, payload: string, messageId: number, connection = 1): InboundMessage {
  return { topic, payload: Buffer.from(payload), qos: 1, messageId, connection }
}

t.test('failures are the data\'s (constraint, type, size, binding) or the store\'s (everything else)', async (t) => {
  t.equal(commitFailureOf(sqliteError('SQLITE_CONSTRAINT_NOTNULL', 'x')), 'message')
  t.equal(commitFailureOf(sqliteError('SQLITE_MISMATCH', 'x')), 'message')
  t.equal(commitFailureOf(sqliteError('SQLITE_TOOBIG', 'x')), 'message')
  t.equal(commitFailureOf(new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null')), 'message')
  t.equal(commitFailureOf(new RangeError('The supplied SQL string contains no statements')), 'message')
  for (const code of ['SQLITE_FULL', 'SQLITE_IOERR_WRITE', 'SQLITE_IOERR_FSYNC', 'SQLITE_READONLY', 'SQLITE_READONLY_DBMOVED', 'SQLITE_BUSY', 'SQLITE_CORRUPT']) {
    t.equal(commitFailureOf(sqliteError(code, 'x')), 'store', code)
  }
  t.equal(commitFailureOf(new Error('disk full')), 'store', 'an error without a code is never blamed on a message')
  t.equal(commitFailureOf(null), 'store')
})

t.test('a batch the data fails is bisected to its one bad message: it is dead-lettered, the rest stored, all acknowledged in order', async (t) => {
  const { sensors, session, fake } = setUp(t)
  fake.poison = 5
  for (let i = 1; i <= 8; i++) session.emit('message', message('s', String(i), 100 + i))
  t.same(session.ids(), [101, 102, 103, 104, 105, 106, 107, 108], 'every message acknowledged, in the order received')
  t.notOk(session.paused, 'reading never stopped')
  t.same(sensors.readings('s', 'value').map((r) => r.value), [1, 2, 3, 4, 6, 7, 8], 'the others are stored')
  t.match(sensors.deadLetters(), [{ topic: 's', reason: STORE_FAILED, detail: /^SQLITE_CONSTRAINT_NOTNULL: NOT NULL constraint failed/, size: 1, bytes: Buffer.from('5') }])
  t.same(sensors.totals(), { received: 8, stored: 7, rejected: 1 }, 'the totals move it from stored to rejected')
  t.same(fake.attempts, [8, 4, 4, 2, 1, 1, 1, 2], 'halves down to the one message, then its dead letter alone')

  fake.poison = -1
  for (let i = 9; i <= 16; i++) session.emit('message', message('s', String(i), 100 + i))
  t.equal(sensors.readings('s', 'value').length, 15, 'the stream goes on')
  t.same(fake.attempts.slice(8), [8], 'a good batch is one commit')
})

t.test('a message whose dead letter the store refuses too is counted, dropped and acknowledged: the stream goes on', async (t) => {
  const { sensors, session, fake } = setUp(t, 4)
  fake.poison = 2
  fake.undeadTopic = 'undead'
  session.emit('message', message('s', '1', 1))
  session.emit('message', message('undead', '2', 2))
  session.emit('message', message('s', '3', 3))
  session.emit('message', message('s', '4', 4))
  t.same(session.ids(), [1, 2, 3, 4], 'all acknowledged')
  t.notOk(session.paused, 'reading never stopped')
  t.same(sensors.readings('s', 'value').map((r) => r.value), [1, 3, 4])
  t.equal(sensors.deadLetterCount(), 0, 'its dead letter could not be stored')
  t.same(sensors.totals(), { received: 4, stored: 3, rejected: 1 }, 'but it is counted as rejected')
})

t.test('a store failure in the middle of a bisection keeps what is left, acknowledges only what was committed, and retries', async (t) => {
  const { sensors, session, fake } = setUp(t, 4)
  fake.poison = 2
  const commit = sensors.commit
  let calls = 0
  // 1: [1-4] ✗, 2: [1,2] ✗, 3: [1] ✓, 4: [2] ✗, 5: [2] dead-lettered ✓, 6: [3,4] fails as the disk fills up.
  sensors.commit = (batch) => { if (++calls === 6) fake.failStore(1); commit(batch) }
  for (let i = 1; i <= 4; i++) session.emit('message', message('s', String(i), i))
  t.same(session.ids(), [1, 2], 'the first half is stored (2 dead-lettered), and acknowledged')
  t.ok(session.paused, 'the store\'s failure stops reading')
  t.same(sensors.deadLetters().map((d) => d.reason), [STORE_FAILED], 'nothing good is dead-lettered')
  t.same(await waitFor('the retry', () => session.ids().length === 4 && session.ids(), 5_000), [1, 2, 3, 4], 'the retry stores the rest')
  t.notOk(session.paused)
  t.same(sensors.readings('s', 'value').map((r) => r.value), [1, 3, 4], 'each stored once')
})

t.test('a store failure keeps the whole batch: no dead letter, no acknowledgement, reading paused until it works', async (t) => {
  const { sensors, session, fake, disk } = setUp(t, 2)
  t.equal(disk.view().full, false)
  fake.failStore(2)
  session.emit('message', message('s', '1', 1))
  session.emit('message', message('s', '2', 2))
  t.same(session.ids(), [], 'nothing acknowledged')
  t.equal(disk.view().full, true, 'status says the disk is full')
  t.ok(session.paused)
  session.emit('message', message('s', '3', 3)) // already read off the socket before the pause took hold
  t.same(fake.attempts, [2], 'no bisection for the store\'s failure, and nothing committed while retrying')
  t.same(await waitFor('the retries', () => session.ids().length === 3 && session.ids(), 5_000), [1, 2, 3])
  t.same(fake.attempts, [2, 3, 3], 'retried whole, with what arrived meanwhile')
  t.notOk(session.paused)
  t.equal(sensors.deadLetterCount(), 0)
  t.same(sensors.totals(), { received: 3, stored: 3, rejected: 0 })
})

t.test('acknowledgements go down the connection that delivered each message', async (t) => {
  const { session, fake } = setUp(t, 4)
  fake.failStore(1)
  session.emit('message', message('s', '1', 1, 1))
  session.emit('message', message('s', '2', 2, 1))
  session.emit('message', message('s', '3', 7, 2)) // a reconnect while the store is failing
  t.same(session.acked, [])
  t.same(await waitFor('the retry', () => session.acked.length === 2 && session.acked, 5_000), [[1, [1, 2]], [2, [7]]], 'one write per connection; the session drops those of a closed one')
})

t.test('a parser that throws costs its message, not the agent', async (t) => {
  const { sensors, session, ingest } = setUp(t, 1)
  const parser = (ingest as unknown as { parser: PayloadParser }).parser
  parser.parse = () => { throw new RangeError('Invalid time value') }
  session.emit('message', message('s', '1', 1))
  t.same(session.ids(), [1])
  t.match(sensors.deadLetters(), [{ reason: PARSE_FAILED, detail: 'RangeError: Invalid time value' }])
})

t.test('the health figures survive a store that cannot be read', async (t) => {
  const { sensors, session, ingest } = setUp(t, 1)
  session.emit('message', message('s', '1', 1))
  t.match(ingest.stats(), { received: 1, stored: 1 })
  sensors.totals = () => { throw sqliteError('SQLITE_IOERR_READ', 'disk I/O error') }
  t.match(ingest.stats(), { received: 1, stored: 1, connected: true }, 'the last totals read')
})

t.test('a message the session dropped unread for its size is dead-lettered as oversize, and acknowledged', async (t) => {
  const { sensors, session } = setUp(t, 1)
  session.emit('message', { topic: 'big', payload: Buffer.alloc(0), qos: 1, messageId: 9, connection: 1, oversize: 9_000_000 })
  t.same(session.ids(), [9])
  t.match(sensors.deadLetters(), [{ topic: 'big', reason: 'oversize', size: 9_000_000, detail: /9000000-byte packet/ }])
})
