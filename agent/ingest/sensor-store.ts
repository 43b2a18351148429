import type { Database as DB } from 'better-sqlite3'
import type { Reading } from '../../protocols/sensor-payload.ts'
import type { Logger } from '../../common/logger.ts'
import type { TableSet } from '../../common/schema.ts'

/** The sensor store's tables; it prunes them itself, by its own retention (mqtt.retention). */
export const SENSOR_TABLES: TableSet = {
  name: 'sensors',
  migrations: [
    {
      version: 3,
      sql: `
      -- Raw sensor readings, in arrival order (rowid): retention prunes from the front, so no index slows ingest.
      CREATE TABLE readings (
        sensor TEXT NOT NULL,
        metric TEXT NOT NULL,
        ts     INTEGER NOT NULL,             -- when measured (ms since the epoch)
        value  REAL NOT NULL
      );
      -- Per-minute (period 60000) and per-hour (3600000) summaries, kept longer than the raw readings.
      CREATE TABLE rollups (
        period    INTEGER NOT NULL,
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        start     INTEGER NOT NULL,          -- start of the minute or hour (ms since the epoch)
        count     INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        last      REAL NOT NULL,
        last_ts   INTEGER NOT NULL,
        PRIMARY KEY (period, sensor, metric, start)
      ) WITHOUT ROWID;
      CREATE INDEX rollups_start ON rollups (period, start);
      -- The latest reading of each sensor metric: what "noodle sensors" lists.
      CREATE TABLE sensors (
        sensor    TEXT NOT NULL,
        metric    TEXT NOT NULL,
        value     REAL NOT NULL,
        ts        INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,         -- when its first message arrived (ms since the epoch)
        last_seen INTEGER NOT NULL,          -- when its last message arrived
        count     INTEGER NOT NULL,
        PRIMARY KEY (sensor, metric)
      ) WITHOUT ROWID;
      -- Messages that could not be read, with why: bounded, newest kept.
      CREATE TABLE dead_letters (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        topic  TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        size   INTEGER NOT NULL,             -- the payload's full size
        bytes  BLOB NOT NULL                 -- its first bytes
      );
      -- Running totals that survive restarts (ingest.received…).
      CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `
    },
    {
      version: 8,
      sql: `
      -- Retention prunes sensor tables by time through these indexes: by arrival order alone, one reading
      -- timed far ahead stalled pruning of everything behind it.
      CREATE INDEX readings_ts ON readings (ts);
      CREATE INDEX sensors_last_seen ON sensors (last_seen);
    `
    }
  ]
}

/** A message that could not be read, as the dead letter keeps it. */
export interface DeadLetter {
  at: number
  topic: string
  reason: string
  detail: string
  /** The payload's full size; `bytes` holds at most its first DEAD_LETTER_BYTES. */
  size: number
  bytes: Buffer
}

/** What one ingest batch commits, in one transaction. */
export interface IngestBatch {
  readings: Reading[]
  deadLetters: DeadLetter[]
  /** Messages in the batch; `stored` of them gave readings and `rejected` went to the dead letter. */
  received: number
  stored: number
  rejected: number
  /** When the batch's last message arrived. */
  lastSeen: number
}

export interface IngestTotals {
  received: number
  stored: number
  rejected: number
}

export interface SensorView {
  sensor: string
  metric: string
  value: number
  /** When the latest value was measured, and when its message arrived (ms since the epoch). */
  ts: number
  lastSeen: number
  count: number
  /** Readings per second over the last few minutes. */
  ratePerS: number
}

/** A dead letter as `GET /api/v1/ingest/dead-letters` shows it: the payload's first bytes as text. */
export interface DeadLetterView {
  at: string
  topic: string
  reason: string
  detail: string
  size: number
  payload: string
}

export interface RollupView {
  start: number
  count: number
  min: number
  max: number
  mean: number
  last: number
}

export interface Retention {
  rawMs: number
  minuteMs: number
  hourMs: number
}

/** A dead letter keeps this much of a payload: enough to see what went wrong, never a 64 KiB blob per row. */
export const DEAD_LETTER_BYTES = 1024
/** …and this much of its topic (MQTT allows 64 KiB) and of the detail, so the capped table stays small. */
export const DEAD_LETTER_TEXT_CHARS = 1024
/** The dead letter keeps the newest this many messages. */
const DEAD_LETTER_LIMIT = 10_000
/** Distinct sensor metrics the store keeps by default (`mqtt.maxSensors`). */
export const DEFAULT_MAX_SENSORS = 10_000
/** New sensor metrics one message may bring: a sensor sends a few, a flood of made-up names many. */
export const MAX_NEW_SENSORS_PER_MESSAGE = 32
/** After an attempt to make room found too little, the next is not made before this (each may scan the table). */
const EVICT_RETRY_MS = 1_000
export const MINUTE_MS = 60_000
export const HOUR_MS = 3_600_000
/** Rows one prune step deletes: small enough that ingest waits a few ms at most. */
const PRUNE_STEP_ROWS = 2_000
const PRUNE_INTERVAL_MS = 60_000
/** The rate is taken over the current minute and this many before it. */
const RATE_MINUTES = 4

/**
 * SQLite result codes that say the data was wrong (a NOT NULL, a type, a size): the same batch would fail again,
 * and one message in it is to blame. Any other failure (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, BUSY…) is
 * the store's: the batch is good and is kept until the store works again.
 */
const DATA_FAULT_CODES = /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/

/**
 * Whose fault a failed commit is: 'message' when the data could not be written (a SQLite constraint or type
 * error, or a value better-sqlite3 cannot bind), 'store' otherwise (disk full, I/O error, read-only…).
 */
export function commitFailureOf (err: unknown): 'message' | 'store' {
  if (err instanceof TypeError || err instanceof RangeError) return 'message'
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && DATA_FAULT_CODES.test(code) ? 'message' : 'store'
}

interface Rollup { period: number, sensor: string, metric: string, start: number, count: number, min: number, max: number, sum: number, last: number, lastTs: number }
interface Latest { sensor: string, metric: string, value: number, ts: number, count: number }

/**
 * Sensor readings in the agent's SQLite database (SENSOR_TABLES): raw readings, minute and hour
 * rollups (count, min, max, mean, last), the latest value per sensor, the dead letter and the ingest totals.
 * A batch is written in one transaction, so the totals always agree with what is stored. While started, old
 * rows are pruned each minute in small steps.
 */
export class SensorStore {
  private readonly db: DB
  private readonly log: Logger
  private readonly retention: Retention
  private prepared: ReturnType<SensorStore['prepare']> | undefined
  private readonly maxSensors: number
  private pruneTimer: NodeJS.Timeout | undefined
  private pruning: NodeJS.Immediate | undefined
  /** The sensor metrics in the store (by `sensorKey`), read once and again after a prune forgot some. */
  private known: Set<string> | undefined
  /** Until when making room for new sensor metrics is not tried again (the last attempt found too little). */
  private noRoomUntil = 0

  constructor (components: { db: DB, log: Logger, retention: Retention, maxSensors?: number }) {
    this.db = components.db
    this.log = components.log
    this.retention = components.retention
    this.maxSensors = components.maxSensors ?? DEFAULT_MAX_SENSORS
  }

  /** Compiled on first use, once. */
  private get statements (): ReturnType<SensorStore['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    return {
      commit: this.db.transaction((batch: IngestBatch) => { this.write(batch) }),
      insertReading: this.db.prepare('INSERT INTO readings (sensor, metric, ts, value) VALUES (?, ?, ?, ?)'),
      upsertRollup: this.db.prepare(`
        INSERT INTO rollups (period, sensor, metric, start, count, min_value, max_value, sum_value, last, last_ts)
        VALUES (@period, @sensor, @metric, @start, @count, @min, @max, @sum, @last, @lastTs)
        ON CONFLICT DO UPDATE SET count = count + excluded.count,
          min_value = min(min_value, excluded.min_value), max_value = max(max_value, excluded.max_value),
          sum_value = sum_value + excluded.sum_value,
          last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END,
          last_ts = max(last_ts, excluded.last_ts)`),
      upsertSensor: this.db.prepare(`
        INSERT INTO sensors (sensor, metric, value, ts, first_seen, last_seen, count) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO UPDATE SET count = count + excluded.count, last_seen = excluded.last_seen,
          value = CASE WHEN excluded.ts >= ts THEN excluded.value ELSE value END, ts = max(ts, excluded.ts)`),
      insertDeadLetter: this.db.prepare('INSERT INTO dead_letters (at, topic, reason, detail, size, bytes) VALUES (?, ?, ?, ?, ?, ?)'),
      addCounter: this.db.prepare('INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value'),
      counters: this.db.prepare<[], { name: string, value: number }>("SELECT name, value FROM counters WHERE name LIKE 'ingest.%'"),
      deadLetterCount: this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM dead_letters'),
      // Pruning runs step after step: its statements are compiled once, like ingest's. Each finds its rows
      // through an index on time (readings_ts, rollups_start, sensors_last_seen, the dead letters' id).
      pruneReadings: this.db.prepare<[number, number]>(`
        DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings WHERE ts < ? LIMIT ?)`),
      pruneSensors: this.db.prepare<[number, number]>(`
        DELETE FROM sensors WHERE (sensor, metric) IN (SELECT sensor, metric FROM sensors WHERE last_seen < ? LIMIT ?)`),
      pruneRollups: this.db.prepare<[number, number, number]>(`
        DELETE FROM rollups WHERE (period, sensor, metric, start) IN (
          SELECT period, sensor, metric, start FROM rollups WHERE period = ? AND start < ? LIMIT ?)`),
      pruneDeadLetters: this.db.prepare<[number]>('DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - ?'),
      // Room for new sensor metrics: those seen only once, or silent for the raw retention, the longest silent first.
      countEvictable: this.db.prepare<[number, number], { n: number }>(`
        SELECT count(*) AS n FROM (SELECT 1 FROM sensors WHERE count = 1 OR last_seen < ? LIMIT ?)`),
      evictSensors: this.db.prepare<[number, number], { sensor: string, metric: string }>(`
        DELETE FROM sensors WHERE (sensor, metric) IN (
          SELECT sensor, metric FROM sensors WHERE count = 1 OR last_seen < ? ORDER BY last_seen LIMIT ?)
        RETURNING sensor, metric`),
      knownSensors: this.db.prepare<[], { sensor: string, metric: string }>('SELECT sensor, metric FROM sensors'),
      forgetSensor: this.db.prepare<[string], { sensor: string, metric: string }>('DELETE FROM sensors WHERE sensor = ? RETURNING sensor, metric'),
      forgetMetric: this.db.prepare<[string, string], { sensor: string, metric: string }>('DELETE FROM sensors WHERE sensor = ? AND metric = ? RETURNING sensor, metric'),
      deadLetters: this.db.prepare<[number], DeadLetter>('SELECT at, topic, reason, detail, size, bytes FROM dead_letters ORDER BY id DESC LIMIT ?'),
      sensors: this.db.prepare<[number, number], Omit<SensorView, 'ratePerS' | 'lastSeen'> & { first_seen: number, last_seen: number, recent: number }>(`
        SELECT s.sensor, s.metric, s.value, s.ts, s.first_seen, s.last_seen, s.count,
          (SELECT coalesce(sum(r.count), 0) FROM rollups r
            WHERE r.period = ? AND r.sensor = s.sensor AND r.metric = s.metric AND r.start >= ?) AS recent
        FROM sensors s ORDER BY s.sensor, s.metric`),
      readings: this.db.prepare<[string, string, number, number], Reading>(
        'SELECT sensor, metric, ts, value FROM readings WHERE sensor = ? AND metric = ? AND ts >= ? ORDER BY rowid LIMIT ?'),
      rollups: this.db.prepare<[number, string, string, number], { start: number, count: number, min: number, max: number, sum: number, last: number }>(`
        SELECT start, count, min_value AS min, max_value AS max, sum_value AS sum, last FROM rollups
        WHERE period = ? AND sensor = ? AND metric = ? AND start >= ? ORDER BY start`)
    }
  }

  /**
   * Writes a batch (readings, rollups, latest values, dead letters, totals) in one transaction, synced to disk
   * before it returns (synchronous = FULL: its messages are acknowledged next, so a power cut must not lose
   * it). The rest of the agent's writes keep NORMAL, which loses the last commits on power loss, never consistency.
   */
  commit (batch: IngestBatch): void {
    // Not a statement prepared once: SQLite applies this pragma when it compiles it, not when it runs it.
    this.db.exec('PRAGMA synchronous = FULL')
    try {
      this.statements.commit(batch)
    } finally {
      this.db.exec('PRAGMA synchronous = NORMAL')
    }
  }

  private write (batch: IngestBatch): void {
    const { insertReading, upsertRollup, upsertSensor, insertDeadLetter, addCounter } = this.statements
    const rollups = new Map<string, Rollup>()
    const latest = new Map<string, Latest>()
    for (const r of batch.readings) {
      insertReading.run(r.sensor, r.metric, r.ts, r.value)
      const id = sensorKey(r.sensor, r.metric)
      rollUp(rollups, MINUTE_MS, id, r)
      rollUp(rollups, HOUR_MS, id, r)
      const l = latest.get(id)
      if (l === undefined) latest.set(id, { sensor: r.sensor, metric: r.metric, value: r.value, ts: r.ts, count: 1 })
      else {
        l.count++
        if (r.ts >= l.ts) { l.ts = r.ts; l.value = r.value }
      }
    }
    for (const r of rollups.values()) upsertRollup.run(r)
    for (const l of latest.values()) upsertSensor.run(l.sensor, l.metric, l.value, l.ts, batch.lastSeen, batch.lastSeen, l.count)
    for (const d of batch.deadLetters) insertDeadLetter.run(d.at, d.topic.slice(0, DEAD_LETTER_TEXT_CHARS), d.reason, d.detail.slice(0, DEAD_LETTER_TEXT_CHARS), d.size, d.bytes)
    if (batch.received > 0) addCounter.run('ingest.received', batch.received)
    if (batch.stored > 0) addCounter.run('ingest.stored', batch.stored)
    if (batch.rejected > 0) addCounter.run('ingest.rejected', batch.rejected)
  }

  totals (): IngestTotals {
    const totals: IngestTotals = { received: 0, stored: 0, rejected: 0 }
    for (const { name, value } of this.statements.counters.all()) {
      const key = name.slice('ingest.'.length)
      if (key in totals) totals[key as keyof IngestTotals] = value
    }
    return totals
  }

  deadLetterCount (): number {
    return this.statements.deadLetterCount.get()?.n ?? 0
  }

  /** Newest first. */
  deadLetters (limit = 100): DeadLetter[] {
    return this.statements.deadLetters.all(limit)
  }

  /** Newest first, for the operator: bytes that are not UTF-8 show as U+FFFD. */
  deadLetterViews (limit = 100): DeadLetterView[] {
    return this.deadLetters(limit).map(({ at, bytes, ...d }) => ({ at: new Date(at).toISOString(), ...d, payload: bytes.toString('utf8') }))
  }

  /** Every sensor metric with its latest value and its rate over the current minute and the RATE_MINUTES before. */
  sensors (now = Date.now()): SensorView[] {
    const since = Math.floor(now / MINUTE_MS) * MINUTE_MS - RATE_MINUTES * MINUTE_MS
    const rows = this.statements.sensors.all(MINUTE_MS, since)
    return rows.map((r) => {
      // A sensor first seen within the window: intervals between its readings so far (two readings 1 s apart
      // are 1/s). An older one: readings over the whole window, so a sensor that went quiet fades to 0.
      const young = r.first_seen > since
      const spanS = ((young ? r.last_seen : now) - Math.max(since, r.first_seen)) / 1000
      const intervals = young ? r.recent - 1 : r.recent
      return {
        sensor: r.sensor,
        metric: r.metric,
        value: r.value,
        ts: r.ts,
        lastSeen: r.last_seen,
        count: r.count,
        ratePerS: spanS > 0 && intervals > 0 ? Math.round(intervals / spanS * 100) / 100 : 0
      }
    })
  }

  /** Raw readings of one sensor metric since `since`, oldest first. */
  readings (sensor: string, metric: string, since = 0, limit = 1000): Reading[] {
    return this.statements.readings.all(sensor, metric, since, limit)
  }

  /** Minute (`MINUTE_MS`) or hour (`HOUR_MS`) summaries of one sensor metric, oldest first. */
  rollups (period: number, sensor: string, metric: string, since = 0): RollupView[] {
    return this.statements.rollups.all(period, sensor, metric, since)
      .map(({ sum, ...r }) => ({ ...r, mean: sum / r.count }))
  }

  /**
   * Deletes at most PRUNE_STEP_ROWS expired rows of each table; returns how many. Each step reads only rows it
   * may delete, through an index on time, however big the table is and whatever times lie ahead. A sensor is
   * forgotten once it has sent nothing for the longest retention (nothing of it is left by then).
   */
  pruneStep (now = Date.now()): number {
    const { pruneReadings, pruneSensors, pruneRollups, pruneDeadLetters } = this.statements
    let deleted = pruneReadings.run(now - this.retention.rawMs, PRUNE_STEP_ROWS).changes
    const longest = Math.max(this.retention.rawMs, this.retention.minuteMs, this.retention.hourMs)
    deleted += pruneSensors.run(now - longest, PRUNE_STEP_ROWS).changes
    for (const [period, keepMs] of [[MINUTE_MS, this.retention.minuteMs], [HOUR_MS, this.retention.hourMs]] as const) {
      deleted += pruneRollups.run(period, now - keepMs, PRUNE_STEP_ROWS).changes
    }
    deleted += pruneDeadLetters.run(DEAD_LETTER_LIMIT).changes
    return deleted
  }

  /** How many distinct sensor metrics the store keeps at most (`mqtt.maxSensors`). */
  get sensorLimit (): number {
    return this.maxSensors
  }

  /**
   * Why readings of these sensor metrics may not be stored, or null when they may: those the store has, and at
   * most MAX_NEW_SENSORS_PER_MESSAGE new ones, while fewer than `maxSensors` are known. A flood of made-up names
   * (anyone who may publish can send one) must not grow the store's sensors and rollups without bound. At the
   * cap, room is made by forgetting sensor metrics seen only once or silent for `retention.rawHours` (their
   * readings stay until retention takes them), so made-up names cannot shut real sensors out for long; past
   * that, new names go to the dead letter.
   */
  admits (readings: ReadonlyArray<{ sensor: string, metric: string }>, now = Date.now()): string | null {
    try {
      this.known ??= new Set(this.statements.knownSensors.all().map((r) => sensorKey(r.sensor, r.metric)))
    } catch (err) {
      // A store that cannot be read cannot take the readings either: the commit fails, and is retried, as such.
      this.log.warn({ err }, 'reading the known sensors failed')
      return null
    }
    const known = this.known
    const fresh = new Set(readings.map((r) => sensorKey(r.sensor, r.metric)).filter((id) => !known.has(id)))
    // Near the cap only: a gateway's first message may well name more, and while there is room, it is room.
    if (fresh.size > MAX_NEW_SENSORS_PER_MESSAGE && known.size + fresh.size > this.maxSensors / 2) {
      return `${fresh.size} new sensor metrics in one message, over the ${MAX_NEW_SENSORS_PER_MESSAGE} one may bring`
    }
    const over = known.size + fresh.size - this.maxSensors
    if (over > 0 && this.makeRoom(over, now) < over) {
      return `a new sensor metric, over the ${this.maxSensors} the store keeps (mqtt.maxSensors), and none seen only once or silent for retention.rawHours to forget`
    }
    for (const id of fresh) known.add(id)
    return null
  }

  /**
   * Forgets `count` sensor metrics seen only once or silent for the raw retention, when there are as many;
   * returns how many it forgot (all or none).
   */
  private makeRoom (count: number, now: number): number {
    if (now < this.noRoomUntil) return 0
    const silentSince = now - this.retention.rawMs
    let forgotten: Array<{ sensor: string, metric: string }> = []
    try {
      if ((this.statements.countEvictable.get(silentSince, count)?.n ?? 0) === count) forgotten = this.statements.evictSensors.all(silentSince, count)
    } catch (err) {
      this.log.warn({ err }, 'forgetting sensors to make room failed')
    }
    for (const r of forgotten) this.known?.delete(sensorKey(r.sensor, r.metric))
    if (forgotten.length < count) this.noRoomUntil = now + EVICT_RETRY_MS
    return forgotten.length
  }

  /**
   * Forgets a sensor's metric, or all its metrics: it leaves the sensor list and its place under `maxSensors` is
   * free; its readings and rollups stay until retention takes them. Returns how many sensor metrics it forgot.
   */
  forget (sensor: string, metric?: string): number {
    const forgotten = metric === undefined
      ? this.statements.forgetSensor.all(sensor)
      : this.statements.forgetMetric.all(sensor, metric)
    for (const r of forgotten) this.known?.delete(sensorKey(r.sensor, r.metric))
    return forgotten.length
  }

  /** Prunes step by step, yielding to ingest between steps, until nothing is left to prune. */
  pruneAll (done?: (deleted: number) => void, now: () => number = Date.now): void {
    let total = 0
    const step = () => {
      this.pruning = undefined
      let n: number
      try {
        n = this.pruneStep(now())
      } catch (err) {
        this.log.warn({ err }, 'pruning sensor readings failed')
        n = 0
      }
      total += n
      if (n > 0) this.pruning = setImmediate(step)
      else {
        // Silent sensors may have been forgotten: make room for new ones.
        if (total > 0) this.known = undefined
        done?.(total)
      }
    }
    step()
  }

  start (): void {
    this.pruneAll()
    this.pruneTimer = setInterval(() => { if (this.pruning === undefined) this.pruneAll() }, PRUNE_INTERVAL_MS).unref()
  }

  stop (): void {
    clearInterval(this.pruneTimer)
    clearImmediate(this.pruning)
    this.pruning = undefined
  }
}

/**
 * One key for a sensor metric that no other pair of names shares: the sensor's length goes first, so no
 * character in a name (not even U+0000) can shift where one ends and the other begins.
 */
export function sensorKey (sensor: string, metric: string): string {
  return `${sensor.length}:${sensor}${metric}`
}

function rollUp (rollups: Map<string, Rollup>, period: number, id: string, r: Reading): void {
  const start = r.ts - (r.ts % period)
  // The id ends the key: the period and start before it are digits with a fixed separator.
  const key = `${period}:${start}:${id}`
  const agg = rollups.get(key)
  if (agg === undefined) {
    rollups.set(key, { period, sensor: r.sensor, metric: r.metric, start, count: 1, min: r.value, max: r.value, sum: r.value, last: r.value, lastTs: r.ts })
    return
  }
  agg.count++
  if (r.value < agg.min) agg.min = r.value
  if (r.value > agg.max) agg.max = r.value
  agg.sum += r.value
  if (r.ts >= agg.lastTs) { agg.last = r.value; agg.lastTs = r.ts }
}
