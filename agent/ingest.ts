import type { PayloadParser, Reading } from '../protocols/sensor-payload.ts'
import type { Logger } from './logger.ts'
import type { InboundMessage, MqttSession } from './mqtt-session.ts'
import { DEAD_LETTER_BYTES } from './sensor-store.ts'
import type { DeadLetter, SensorStore } from './sensor-store.ts'

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

/**
 * MQTT → store. Messages are read as they arrive and gathered into a batch; the batch is committed in one
 * transaction, and only then are its QoS 1 messages acknowledged. A message the agent never acknowledged is sent
 * again by the broker (the session is persistent), so a crash loses nothing: at worst the last committed
 * batch, whose acknowledgements were not yet sent, is stored twice. Unreadable messages go to the dead letter
 * in the same transaction, and are acknowledged like the rest: they are kept, not lost, and must not block
 * the stream.
 */
export class Ingest {
  private readonly session: MqttSession
  private readonly store: SensorStore
  private readonly parser: PayloadParser
  private readonly log: Logger
  private readonly limits: BatchLimits
  private readings: Reading[] = []
  private deadLetters: DeadLetter[] = []
  private acks: number[] = []
  private received = 0
  private stored = 0
  private rejected = 0
  private lastSeen = 0
  private batchConnection = 0
  private flushTimer: NodeJS.Timeout | undefined
  private retrying = false
  private rateTimer: NodeJS.Timeout | undefined
  private storedTotal = 0
  private readonly storedPerSecond: number[] = []
  private brokerDropped = 0

  constructor (components: { session: MqttSession, store: SensorStore, parser: PayloadParser, log: Logger, limits: BatchLimits }) {
    this.session = components.session
    this.store = components.store
    this.parser = components.parser
    this.log = components.log
    this.limits = components.limits
  }

  private readonly onMessage = (message: InboundMessage): void => {
    if (message.topic.startsWith('$SYS/')) {
      this.onBrokerStat(message)
      return
    }
    // Acknowledgements belong to the connection that delivered the message: close the batch at a reconnect.
    if (message.connection !== this.batchConnection && this.received > 0) this.flush()
    this.batchConnection = message.connection
    const now = Date.now()
    const parsed = this.parser.parse(message.topic, message.payload, now)
    if (Array.isArray(parsed)) {
      for (const reading of parsed) this.readings.push(reading)
      this.stored++
    } else {
      this.deadLetters.push({
        at: now,
        topic: message.topic,
        reason: parsed.reason,
        detail: parsed.detail,
        size: message.payload.length,
        bytes: message.payload.subarray(0, DEAD_LETTER_BYTES)
      })
      this.rejected++
    }
    this.received++
    this.lastSeen = now
    if (message.messageId !== undefined) this.acks.push(message.messageId)
    if (this.received >= this.limits.maxMessages) this.flush()
    else this.flushTimer ??= setTimeout(() => { this.flush() }, this.limits.maxDelayMs)
  }

  /** Commits the batch, then acknowledges its messages. A failed commit keeps the batch, stops reading, and retries. */
  flush (): void {
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    if (this.received === 0) return
    try {
      this.store.commit({
        readings: this.readings,
        deadLetters: this.deadLetters,
        received: this.received,
        stored: this.stored,
        rejected: this.rejected,
        lastSeen: this.lastSeen
      })
    } catch (err) {
      this.log.error({ err, messages: this.received }, 'ingest: storing a batch failed; holding it and reading no more until it is stored')
      this.session.pause()
      this.retrying = true
      this.flushTimer = setTimeout(() => { this.flush() }, RETRY_MS)
      return
    }
    this.session.ack(this.batchConnection, this.acks)
    this.storedTotal += this.stored
    this.readings = []
    this.deadLetters = []
    this.acks = []
    this.received = 0
    this.stored = 0
    this.rejected = 0
    if (this.retrying) {
      this.retrying = false
      this.session.resume()
      this.log.info('ingest: storing works again')
    }
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
    const totals = this.store.totals()
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
