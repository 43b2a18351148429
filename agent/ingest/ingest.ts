import { topicMatches } from '../../protocols/sensor-payload.ts'
import type { PayloadParser, Reading } from '../../protocols/sensor-payload.ts'
import type { Logger } from '../../common/logger.ts'
import { logTopic } from './mqtt-session.ts'
import type { InboundMessage, MqttSession } from './mqtt-session.ts'
import { commitFailureOf, DEAD_LETTER_BYTES } from './sensor-store.ts'
import type { DeadLetter, IngestBatch, IngestTotals, SensorStore } from './sensor-store.ts'

/** What `noodle ingest` prints: totals kept in the store, so they survive restarts. */
export interface IngestStatus {
  received: number
  stored: number
  rejected: number
  deadLetter: number
  connected: boolean
  /** The broker's URL without credentials; null where none is configured. */
  broker: string | null
}

/** What the health beacon carries, so the mesh sees what each box ingests. */
export interface IngestStats {
  received: number
  stored: number
  rejected: number
  /** Messages stored per second, over the last few seconds. */
  perS: number
  /** Messages the broker itself dropped (its queue for a slow subscriber was full), where it reports that. */
  brokerDropped: number
  connected: boolean
}

export interface BatchLimits {
  /** A batch is committed once it holds this many messages… */
  maxMessages: number
  /** …or once its first message has waited this long. */
  maxDelayMs: number
}

/** Mosquitto counts, under $SYS, the messages it dropped because a subscriber's queue was full. */
export const BROKER_DROPPED_TOPIC = '$SYS/broker/publish/messages/dropped'
/** After a failed commit, the batch is tried again this long after. */
const RETRY_MS = 1_000
const RATE_WINDOW_S = 5
/** The dead letter's reason for a message whose readings the store refused (its bisection found it). */
export const STORE_FAILED = 'store-failed'
/** The dead letter's reason for a message the parser threw on (a bug: it refuses, never throws). */
export const PARSE_FAILED = 'parse-failed'
/** The dead letter's reason for a reading of a new sensor metric when the store keeps as many as it may. */
export const TOO_MANY_SENSORS = 'too-many-sensors'

/** One message of the batch: what it gave (readings, or a dead letter) and what acknowledges it. */
interface Pending {
  readings: Reading[] | null
  deadLetter: DeadLetter | null
  topic: string
  payload: Buffer
  receivedAt: number
  messageId: number | undefined
  connection: number
}

/** The store's batch for some messages: their readings, dead letters and counts. */
function batchOf (messages: readonly Pending[]): IngestBatch {
  const readings: Reading[] = []
  const deadLetters: DeadLetter[] = []
  for (const m of messages) {
    if (m.readings !== null) for (const r of m.readings) readings.push(r)
    if (m.deadLetter !== null) deadLetters.push(m.deadLetter)
  }
  return {
    readings,
    deadLetters,
    received: messages.length,
    stored: messages.length - deadLetters.length,
    rejected: deadLetters.length,
    lastSeen: (messages.at(-1) as Pending).receivedAt
  }
}

/**
 * MQTT → store. Messages are read as they arrive and gathered into a batch; the batch is committed in one
 * transaction, and only then are its QoS 1 messages acknowledged. A message the agent never acknowledged is sent
 * again by the broker (the session is persistent), so a crash loses nothing: at worst the last committed
 * batch, whose acknowledgements were not yet sent, is stored twice. Unreadable messages go to the dead letter
 * in the same transaction, and are acknowledged like the rest: they are kept, not lost, and must not block
 * the stream.
 *
 * A commit can fail for two reasons. The data's (a message the parser let through but SQLite refuses): the
 * batch is split in halves until the one message is found; it goes to the dead letter as `store-failed`, the
 * others are stored, and all are acknowledged. The store's (disk full, I/O error, read-only): nothing is the
 * messages' fault, so the batch is kept, reading stops, and the commit is retried until it works.
 */
export class Ingest {
  private readonly session: MqttSession
  private readonly store: SensorStore
  private readonly parser: PayloadParser
  private readonly log: Logger
  private readonly limits: BatchLimits
  private readonly topics: readonly string[]
  private readonly disk: { observe: (err: unknown) => boolean } | undefined
  private pending: Pending[] = []
  private batchConnection = 0
  private flushTimer: NodeJS.Timeout | undefined
  private retrying = false
  private rateTimer: NodeJS.Timeout | undefined
  private storedTotal = 0
  private readonly storedPerSecond: number[] = []
  private brokerDropped = 0
  private lastTotals: IngestTotals = { received: 0, stored: 0, rejected: 0 }

  constructor (components: {
    session: MqttSession
    store: SensorStore
    parser: PayloadParser
    log: Logger
    limits: BatchLimits
    /** The topic filters subscribed to (`mqtt.topics`): a message on any other topic is not ours to store. */
    topics: readonly string[]
    /** Told of every failed commit, so that status says when the disk is full. */
    disk?: { observe: (err: unknown) => boolean }
  }) {
    this.session = components.session
    this.store = components.store
    this.parser = components.parser
    this.log = components.log
    this.limits = components.limits
    this.topics = components.topics
    this.disk = components.disk
  }

  private readonly onMessage = (message: InboundMessage): void => {
    if (message.topic.startsWith('$SYS/')) {
      this.onBrokerStat(message)
      return
    }
    // Acknowledgements belong to the connection that delivered the message: close the batch at a reconnect.
    if (message.connection !== this.batchConnection && this.pending.length > 0 && !this.retrying) this.flush()
    this.batchConnection = message.connection
    const now = Date.now()
    let parsed: Reading[] | { reason: string, detail: string }
    try {
      // A broker sends only what we subscribed to, unless it is broken or hostile.
      parsed = !this.topics.some((filter) => topicMatches(sharedFilterOf(filter), message.topic))
        ? { reason: 'bad-topic', detail: 'the topic matches none of mqtt.topics: never subscribed to' }
        : message.oversize === undefined
          ? this.parser.parse(message.topic, message.payload, now)
          : { reason: 'oversize', detail: `a ${message.oversize}-byte packet, over the session's maximum packet size: dropped unread` }
    } catch (err) {
      // The parser never throws by design; should a bug make it, one message must not end the agent.
      this.log.error({ err, topic: logTopic(message.topic) }, 'ingest: reading a message failed; it goes to the dead letter')
      parsed = { reason: PARSE_FAILED, detail: `${(err as Error).name}: ${(err as Error).message}` }
    }
    const refusal = Array.isArray(parsed) ? this.store.admits(parsed, now) : null
    if (refusal !== null) parsed = { reason: TOO_MANY_SENSORS, detail: refusal }
    const readings = Array.isArray(parsed) ? parsed : null
    const deadLetter = Array.isArray(parsed) ? null : deadLetterOf(message.topic, message.payload, now, parsed.reason, parsed.detail, message.oversize)
    this.pending.push({ readings, deadLetter, topic: message.topic, payload: message.payload, receivedAt: now, messageId: message.messageId, connection: message.connection })
    if (this.retrying) return // the retry timer commits
    if (this.pending.length >= this.limits.maxMessages) this.flush()
    else this.flushTimer ??= setTimeout(() => { this.flush() }, this.limits.maxDelayMs)
  }

  /**
   * Commits the batch, then acknowledges its messages. A commit the data failed is bisected (see the class); one
   * the store failed keeps what is left of the batch, stops reading, and retries.
   */
  flush (): void {
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    if (this.pending.length === 0) return
    try {
      this.commitFront(this.pending.length)
    } catch (err) {
      this.disk?.observe(err)
      this.log.error({ err, messages: this.pending.length }, 'ingest: storing a batch failed; holding it and reading no more until it is stored')
      this.session.pause()
      this.retrying = true
      this.flushTimer = setTimeout(() => { this.flush() }, RETRY_MS)
      return
    }
    if (this.retrying) {
      this.retrying = false
      this.session.resume()
      this.log.info('ingest: storing works again')
    }
  }

  /**
   * Commits the first `count` pending messages and acknowledges them; when the data fails the commit, each half
   * in turn, down to the one message to blame. Throws when the store fails: what is still pending stays.
   */
  private commitFront (count: number): void {
    const part = this.pending.slice(0, count)
    try {
      this.store.commit(batchOf(part))
    } catch (err) {
      if (commitFailureOf(err) === 'store') throw err
      if (count > 1) {
        const half = Math.ceil(count / 2)
        this.commitFront(half)
        this.commitFront(count - half)
        return
      }
      const m = part[0] as Pending
      const why = `${(err as { code?: string }).code ?? (err as Error).name}: ${(err as Error).message}`
      this.log.warn({ topic: logTopic(m.topic), err }, 'ingest: the store refused a message; it goes to the dead letter')
      m.readings = null
      m.deadLetter = deadLetterOf(m.topic, m.payload, m.receivedAt, STORE_FAILED, why)
      try {
        this.store.commit(batchOf(part))
      } catch (again) {
        if (commitFailureOf(again) === 'store') throw again
        // Not even its dead letter can be stored: retrying would stop the stream for good, so it is counted as
        // rejected, logged, and acknowledged.
        this.log.error({ topic: logTopic(m.topic), err: again }, 'ingest: the store refused a message and its dead letter; it is dropped')
        this.store.commit({ readings: [], deadLetters: [], received: 1, stored: 0, rejected: 1, lastSeen: m.receivedAt })
      }
    }
    this.committed(part)
  }

  /** Acknowledges committed messages, in order, each down the connection that delivered it. */
  private committed (part: readonly Pending[]): void {
    this.pending.splice(0, part.length)
    let ids: number[] = []
    let connection = part[0]?.connection ?? 0
    for (const m of part) {
      if (m.connection !== connection) {
        this.session.ack(connection, ids)
        ids = []
        connection = m.connection
      }
      if (m.messageId !== undefined) ids.push(m.messageId)
      if (m.readings !== null) this.storedTotal++
    }
    this.session.ack(connection, ids)
  }

  private onBrokerStat (message: InboundMessage): void {
    if (message.topic !== BROKER_DROPPED_TOPIC) return
    const dropped = Number(message.payload.toString())
    if (!Number.isSafeInteger(dropped)) return
    if (dropped > this.brokerDropped) {
      this.log.warn({ broker: this.session.broker, dropped, since: dropped - this.brokerDropped },
        'ingest: the broker is dropping messages (its queue limits are too small for this rate: raise max_queued_messages)')
    }
    this.brokerDropped = dropped
  }

  start (): void {
    this.session.on('message', this.onMessage)
    this.rateTimer = setInterval(() => {
      this.storedPerSecond.push(this.storedTotal)
      if (this.storedPerSecond.length > RATE_WINDOW_S + 1) this.storedPerSecond.shift()
    }, 1_000).unref()
  }

  stop (): void {
    this.session.off('message', this.onMessage)
    clearInterval(this.rateTimer)
    this.flush()
    clearTimeout(this.flushTimer)
  }

  /** The store's totals; the last ones read while the store cannot be read (the health beacon must go on). */
  private totals (): IngestTotals {
    try {
      this.lastTotals = this.store.totals()
    } catch (err) {
      this.log.debug({ err }, 'ingest: reading the totals failed; using the last ones')
    }
    return this.lastTotals
  }

  status (): IngestStatus {
    const totals = this.store.totals()
    return {
      received: totals.received,
      stored: totals.stored,
      rejected: totals.rejected,
      deadLetter: this.store.deadLetterCount(),
      connected: this.session.connected,
      broker: this.session.broker
    }
  }

  stats (): IngestStats {
    const totals = this.totals()
    const window = this.storedPerSecond
    const perS = window.length < 2 ? 0 : ((window.at(-1) as number) - (window[0] as number)) / (window.length - 1)
    return {
      received: totals.received,
      stored: totals.stored,
      rejected: totals.rejected,
      perS: Math.round(perS),
      brokerDropped: this.brokerDropped,
      connected: this.session.connected
    }
  }
}

/** The filter a shared subscription (`$share/<group>/<filter>`, MQTT 5) delivers by; any other as it is. */
function sharedFilterOf (filter: string): string {
  return filter.startsWith('$share/') ? filter.slice(filter.indexOf('/', '$share/'.length) + 1) : filter
}

function deadLetterOf (topic: string, payload: Buffer, at: number, reason: string, detail: string, size = payload.length): DeadLetter {
  return { at, topic, reason, detail, size, bytes: payload.subarray(0, DEAD_LETTER_BYTES) }
}
