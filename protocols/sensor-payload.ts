import { isUtf8 } from 'node:buffer'
import { z } from 'zod'

/**
 * What sensors publish over MQTT, read into readings. Accepted shapes, for a message on topic T:
 *
 * - a plain decimal or JSON number: `21.5`
 * - a JSON object with a numeric `value` (or the configured value fields) and an optional `ts`:
 *   `{"value": 21.5, "ts": 1764331200000}`, `{"temperature": 21.5, "humidity": 40}`
 * - a SenML JSON array (RFC 8428): `[{"bn": "urn:dev:mac:0024be:", "n": "temp", "v": 21.5, "t": 1764331200}]`;
 *   the topic names the sensor, `bn` + `n` the metric (`urn:dev:mac:0024be:temp`)
 *
 * Anything else is refused with a reason, for the dead letter. Parsing never throws. Every number is checked after
 * it is read and after any arithmetic on it (JSON reads 1e400 as Infinity; a SenML base time plus a time can
 * overflow), and every time must lie between 2000-01-01 and the arrival time plus the allowed clock skew.
 */

export interface Reading {
  sensor: string
  metric: string
  /** When it was measured, ms since the epoch: the payload's time if it has one, else when it was received. */
  ts: number
  value: number
}

export const REJECT_REASONS = [
  'oversize', 'invalid-utf8', 'bad-json', 'non-finite', 'out-of-range', 'bad-time', 'time-in-future', 'time-too-old',
  'bad-senml', 'unknown-shape', 'bad-topic'
] as const
/** Why an MQTT sensor payload went to the dead letter (not a peer's message: see codec.ts's MessageRejectReason). */
export type PayloadRejectReason = typeof REJECT_REASONS[number]

export interface Rejection {
  reason: PayloadRejectReason
  /** What exactly was wrong, for the operator reading the dead letter. */
  detail: string
}

/**
 * How a topic's levels name the sensor and the metric, in the spirit of Telegraf's `topic_parsing`: `levels` has
 * one entry per level of `topic`, `sensor`, `metric` or `_` (ignored). Several `sensor` levels are joined by "/".
 * A trailing `#` takes all remaining levels.
 */
export interface TopicRule {
  topic: string
  levels: string
}

export interface PayloadParserOptions {
  /** Object fields that hold values. `value` takes its metric from the topic; other fields name their metric. */
  valueFields: readonly string[]
  maxPayloadBytes: number
  topicRules: readonly TopicRule[]
  /** How far past the arrival time a reading's time may lie (the sensor's clock runs ahead). */
  maxClockSkewMs: number
}

interface TopicKey { sensor: string, metric: string | null }

/** Times below this are seconds since the epoch (this is 1973 in ms); at and above, milliseconds. */
const MS_THRESHOLD = 1e11
/** SenML: times below 2^28 s are relative to now (RFC 8428 §4.5.3). */
const SENML_RELATIVE_LIMIT = 2 ** 28
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/
const NON_FINITE = /^[+-]?(?:nan|inf(?:inity)?)$/i
const MAX_ID_LENGTH = 256
/**
 * Control characters (C0, DEL, C1) in a sensor or metric name: none is meant, and U+0000 would let one name pass
 * for another wherever names are joined (JSON escapes allow any of them).
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
/**
 * The ISO-8601 times a `ts` string may be: a date and a time with seconds optional, fraction optional, and a zone
 * (Z or an offset). Date.parse alone takes almost anything ("5" is 2001-05-01, local time where no zone is given).
 */
const ISO_TIME = /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/
/** No reading is older than this (2000-01-01): earlier times come from clocks that were never set. */
export const EARLIEST_TIME_MS = Date.UTC(2000, 0, 1)
/**
 * Values beyond this magnitude are refused: no sensor measures them, and below it a rollup's sum of even 2^63
 * readings stays finite (an infinite sum, or Infinity − Infinity = NaN, would fail the store's NOT NULL).
 */
export const MAX_ABS_VALUE = 1e100
/** Topic → sensor/metric is cached; a broker with more distinct topics than this simply parses more. */
const TOPIC_CACHE_LIMIT = 10_000

/** `POST /api/v1/sensors/forget`: a sensor's metric, or all its metrics when `metric` is left out. */
export const ForgetSensorRequestSchema = z.strictObject({
  sensor: z.string().min(1).max(MAX_ID_LENGTH),
  metric: z.string().min(1).max(MAX_ID_LENGTH).optional()
})

/** Whether `topic` matches the MQTT filter `filter` (`+` one level, `#` the rest). */
export function topicMatches (filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

/** Checks a topic rule, returning what is wrong with it or null. */
export function topicRuleProblem (rule: TopicRule): string | null {
  const f = rule.topic.split('/')
  const l = rule.levels.split('/')
  if (f.length !== l.length) return `levels has ${l.length} entries but topic has ${f.length} levels`
  const bad = l.find((name) => name !== 'sensor' && name !== 'metric' && name !== '_')
  if (bad !== undefined) return `levels entry "${bad}" must be sensor, metric or _`
  if (!l.includes('sensor')) return 'levels must name at least one sensor level'
  if (l.filter((name) => name === 'metric').length > 1) return 'levels may name at most one metric level'
  return null
}

function timeOf (ts: unknown, receivedAt: number): number | Rejection {
  if (ts === undefined) return receivedAt
  if (typeof ts === 'number') {
    if (!Number.isFinite(ts)) return { reason: 'non-finite', detail: `ts ${ts} is not a finite number` }
    if (ts < 0) return { reason: 'bad-time', detail: `ts ${ts} is not a time` }
    return ts < MS_THRESHOLD ? Math.round(ts * 1000) : Math.round(ts)
  }
  if (typeof ts === 'string') {
    const ms = ISO_TIME.test(ts) ? Date.parse(ts) : Number.NaN
    if (Number.isNaN(ms)) return { reason: 'bad-time', detail: `ts ${JSON.stringify(ts.slice(0, 40))} is not a date` }
    return ms
  }
  return { reason: 'bad-time', detail: `ts must be a number or an ISO date, got ${typeof ts}` }
}

/** Refuses a value that is not finite or beyond MAX_ABS_VALUE; `what` names it in the detail. */
function valueProblem (value: number, what: string): Rejection | null {
  if (!Number.isFinite(value)) return { reason: 'non-finite', detail: `${what} ${value} is not a finite number` }
  if (Math.abs(value) > MAX_ABS_VALUE) return { reason: 'out-of-range', detail: `${what} ${value} is beyond ±${MAX_ABS_VALUE}` }
  return null
}

/** A sensor or metric name: 1–MAX_ID_LENGTH characters, none of them a control character. */
function isName (text: string): boolean {
  return text !== '' && text.length <= MAX_ID_LENGTH && !CONTROL.test(text)
}

function isRejection (value: unknown): value is Rejection {
  return typeof value === 'object' && value !== null && 'reason' in value
}

/** Reads payloads into readings, as configured. Holds a topic cache, so use one per ingest. */
export class PayloadParser {
  private readonly valueFields: readonly string[]
  private readonly maxPayloadBytes: number
  private readonly rules: readonly TopicRule[]
  private readonly maxClockSkewMs: number
  private readonly topicCache = new Map<string, TopicKey>()

  constructor (options: PayloadParserOptions) {
    this.valueFields = options.valueFields
    this.maxPayloadBytes = options.maxPayloadBytes
    this.rules = options.topicRules
    this.maxClockSkewMs = options.maxClockSkewMs
  }

  parse (topic: string, payload: Buffer, receivedAt: number): Reading[] | Rejection {
    if (payload.length > this.maxPayloadBytes) {
      return { reason: 'oversize', detail: `${payload.length} bytes, more than the ${this.maxPayloadBytes} allowed` }
    }
    const key = this.topicKey(topic)
    if (key === null) return { reason: 'bad-topic', detail: `topic names a sensor or metric that is empty, over ${MAX_ID_LENGTH} characters or holds a control character` }
    if (!isUtf8(payload)) return { reason: 'invalid-utf8', detail: 'payload is not valid UTF-8' }
    const text = payload.toString('utf8').trim()
    if (DECIMAL.test(text)) {
      const value = Number(text)
      const problem = valueProblem(value, text.slice(0, 40))
      if (problem !== null) return problem
      return [{ sensor: key.sensor, metric: key.metric ?? 'value', ts: receivedAt, value }]
    }
    if (NON_FINITE.test(text)) return { reason: 'non-finite', detail: `${text} is not a finite number` }
    const first = text.charCodeAt(0)
    // Only objects and arrays get as far as JSON.parse: other JSON (strings, booleans, null) is no reading.
    if (first !== 0x7b && first !== 0x5b) return { reason: 'unknown-shape', detail: 'not a number, a JSON object or a SenML array' }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      return { reason: 'bad-json', detail: (err as Error).message.slice(0, 200) }
    }
    const readings = Array.isArray(json) ? this.senml(json, key, receivedAt) : this.object(json as Record<string, unknown>, key, receivedAt)
    return isRejection(readings) ? readings : this.timesProblem(readings, receivedAt) ?? readings
  }

  /** Refuses readings timed before EARLIEST_TIME_MS or further ahead of their arrival than the allowed skew. */
  private timesProblem (readings: readonly Reading[], receivedAt: number): Rejection | null {
    const latest = receivedAt + this.maxClockSkewMs
    for (const { ts } of readings) {
      if (!Number.isFinite(ts)) return { reason: 'non-finite', detail: `time ${ts} is not a finite number` }
      if (ts > latest) {
        // Not as a date: a time past year 275760 has none, and toISOString() would throw.
        return { reason: 'time-in-future', detail: `time ${ts} ms is more than ${this.maxClockSkewMs} ms after its arrival at ${receivedAt}` }
      }
      if (ts < EARLIEST_TIME_MS) return { reason: 'time-too-old', detail: `time ${ts} ms is before 2000-01-01` }
    }
    return null
  }

  private object (json: Record<string, unknown>, key: TopicKey, receivedAt: number): Reading[] | Rejection {
    const ts = timeOf(json.ts, receivedAt)
    if (isRejection(ts)) return ts
    const readings: Reading[] = []
    for (const field of this.valueFields) {
      const value = json[field]
      if (value === undefined) continue
      if (typeof value !== 'number') return { reason: 'unknown-shape', detail: `field ${field} is ${typeof value}, not a number` }
      const problem = valueProblem(value, `field ${field}`)
      if (problem !== null) return problem
      readings.push({ sensor: key.sensor, metric: field === 'value' ? key.metric ?? 'value' : field, ts, value })
    }
    if (readings.length === 0) {
      return { reason: 'unknown-shape', detail: `object has none of the value fields (${this.valueFields.join(', ')})` }
    }
    return readings
  }

  private senml (records: unknown[], key: TopicKey, receivedAt: number): Reading[] | Rejection {
    let baseName = ''
    let baseTime = 0
    const readings: Reading[] = []
    for (let i = 0; i < records.length; i++) {
      const record = records[i] as Record<string, unknown>
      if (typeof record !== 'object' || record === null || Array.isArray(record)) {
        return { reason: 'bad-senml', detail: `record ${i} is not an object` }
      }
      if (record.bn !== undefined) {
        if (typeof record.bn !== 'string') return { reason: 'bad-senml', detail: `record ${i}: bn must be a string` }
        baseName = record.bn
      }
      if (record.bt !== undefined) {
        if (typeof record.bt !== 'number') return { reason: 'bad-senml', detail: `record ${i}: bt must be a number` }
        if (!Number.isFinite(record.bt)) return { reason: 'non-finite', detail: `record ${i}: bt ${record.bt} is not a finite number` }
        baseTime = record.bt
      }
      let value: number
      if (typeof record.v === 'number') value = record.v
      else if (typeof record.vb === 'boolean') value = record.vb ? 1 : 0
      else if (record.v !== undefined) return { reason: 'bad-senml', detail: `record ${i}: v must be a number` }
      else continue // a string or data value: not a reading, and not wrong either
      const t = record.t === undefined ? 0 : record.t
      if (typeof t !== 'number') return { reason: 'bad-senml', detail: `record ${i}: t must be a number` }
      const problem = valueProblem(value, `record ${i}: v`)
      if (problem !== null) return problem
      if (!Number.isFinite(t)) return { reason: 'non-finite', detail: `record ${i}: t ${t} is not a finite number` }
      const seconds = baseTime + t
      const ts = Math.abs(seconds) < SENML_RELATIVE_LIMIT ? receivedAt + Math.round(seconds * 1000) : Math.round(seconds * 1000)
      if (!Number.isFinite(ts)) return { reason: 'non-finite', detail: `record ${i}: bt + t overflows to ${ts}` }
      if (record.n !== undefined && typeof record.n !== 'string') return { reason: 'bad-senml', detail: `record ${i}: n must be a string` }
      // The record's name is the base name and the name joined (RFC 8428 §4.5.1): the metric of the sensor the
      // topic names. Never a sensor of its own: a publisher allowed one topic must not write another's readings.
      const name = baseName + (record.n ?? '')
      const metric = name === '' ? key.metric ?? 'value' : name
      if (metric.length > MAX_ID_LENGTH) return { reason: 'bad-senml', detail: `record ${i}: bn + n is over ${MAX_ID_LENGTH} characters` }
      if (CONTROL.test(metric)) return { reason: 'bad-senml', detail: `record ${i}: bn + n holds a control character` }
      readings.push({ sensor: key.sensor, metric, ts, value })
    }
    if (readings.length === 0) return { reason: 'bad-senml', detail: 'no record has a numeric value' }
    return readings
  }

  /** The sensor and metric a topic names: by the first rule that matches, else the whole topic is the sensor. */
  private topicKey (topic: string): TopicKey | null {
    const cached = this.topicCache.get(topic)
    if (cached !== undefined) return cached
    let key: TopicKey = { sensor: topic, metric: null }
    for (const rule of this.rules) {
      if (!topicMatches(rule.topic, topic)) continue
      const levels = topic.split('/')
      const names = rule.levels.split('/')
      const sensor: string[] = []
      let metric: string | null = null
      for (let i = 0; i < names.length; i++) {
        const takesRest = i === names.length - 1 && rule.topic.endsWith('#')
        const part = takesRest ? levels.slice(i).join('/') : levels[i] as string
        if (names[i] === 'sensor') sensor.push(part)
        else if (names[i] === 'metric') metric = part
      }
      key = { sensor: sensor.join('/'), metric }
      break
    }
    if (!isName(key.sensor) || (key.metric !== null && !isName(key.metric))) return null
    if (this.topicCache.size >= TOPIC_CACHE_LIMIT) this.topicCache.clear()
    this.topicCache.set(topic, key)
    return key
  }
}
