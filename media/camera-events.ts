import { randomBytes } from 'node:crypto'
import type { Logger } from '../common/logger.ts'
import type { TableSet } from '../common/schema.ts'
import { DAY_MS } from '../common/schema.ts'
import { BoundedMap } from '../common/bounded-map.ts'
import type { Database as DB, Statement } from 'better-sqlite3'
import { MAX_EVENT_TIME } from '../protocols/media.ts'
import type { CameraEvent, CameraEventMessage } from '../protocols/media.ts'
import { DEFAULT_MOTION } from '../protocols/work.ts'
import type { WorkItem } from '../protocols/work.ts'
import type { CameraResult } from './camera.ts'
import type { CameraSnapshots } from './snapshots.ts'
import { ObjectTracker } from './tracker.ts'
import type { Ending, EventChange } from './tracker.ts'

/** Objects cameras followed: this node's cameras' and those other members announced (CameraEventStore). */
export const CAMERA_EVENT_TABLES: TableSet = {
  name: 'camera events',
  migrations: [
    {
      version: 11,
      sql: `
      CREATE TABLE camera_events (
        seq    INTEGER PRIMARY KEY,          -- insertion order: retention's row cap keeps the newest
        id     TEXT NOT NULL,                -- the event's id (protocols/media.ts EVENT_ID)
        camera TEXT NOT NULL,
        node   TEXT NOT NULL,                -- the name of the member whose camera saw it
        peer   TEXT NOT NULL,                -- and its peer id: an event is its peer's (peer, id), changed by it alone
        label  TEXT NOT NULL,
        score  REAL NOT NULL,                -- the best seen
        x1     INTEGER NOT NULL,             -- the latest box, in the source frame's pixels
        y1     INTEGER NOT NULL,
        x2     INTEGER NOT NULL,
        y2     INTEGER NOT NULL,
        zones  TEXT NOT NULL,                -- JSON: the zones it entered, in order
        start  INTEGER NOT NULL,             -- ms since the epoch, on its camera's node's clock
        end    INTEGER,                      -- null while the object is in view
        updated INTEGER NOT NULL             -- when this box last wrote it (its own clock): an open event gone quiet is ended
      );
      CREATE UNIQUE INDEX camera_events_peer_id ON camera_events (peer, id);
      CREATE INDEX camera_events_peer_seq ON camera_events (peer, seq);
      CREATE INDEX camera_events_start ON camera_events (start);
      CREATE INDEX camera_events_open ON camera_events (updated) WHERE end IS NULL;
    `
    }
  ],
  retention: [{ table: 'camera_events', time: 'start', key: 'seq', maxAgeMs: 30 * DAY_MS, maxRows: 1_000_000 }]
}

/** What `GET /api/v1/events` and `noodle events` take: all optional. */
export interface EventQuery {
  camera?: string
  label?: string
  zone?: string
  /** Events that started at or after / before these times (ms). */
  since?: number
  until?: number
  limit?: number
}

/** An event as the API lists it. */
export interface EventView {
  id: string
  camera: string
  node: string
  label: string
  score: number
  box: [number, number, number, number]
  zones: string[]
  start: string
  end: string | null
}

/** ISO-8601 of a time in ms, clamped to what a Date shows (a row written by an older agent, a clock gone wrong). */
function isoTime (ms: number): string {
  return new Date(Math.min(Math.max(ms, 0), MAX_EVENT_TIME)).toISOString()
}

interface EventRow { id: string, camera: string, node: string, label: string, score: number, x1: number, y1: number, x2: number, y2: number, zones: string, start: number, end: number | null }

/** Counts a start sets again at most (cameras × labels this node ever had events of). */
const MAX_COUNTS_CLEARED = 1_000

/** The agent's store, as events use it (declared here so media/ needs nothing of agent/). */
export interface EventDatabase {
  readonly database: DB
  /** Runs a write; a failure (a full disk) is reported and logged, never thrown. */
  write: (fn: () => unknown) => void
}

/** Events in the store (CAMERA_EVENT_TABLES). Writes go through the store's `write`: a full disk is reported, never thrown. */
export class CameraEventStore {
  private readonly store: EventDatabase
  private prepared: ReturnType<CameraEventStore['prepare']> | undefined
  private idsStatement: Statement<[string, string], { id: string }> | undefined
  private byIdStatement: Statement<[number, string], { peer: string, node: string }> | undefined

  constructor (components: { store: EventDatabase }) {
    this.store = components.store
  }

  private get statements (): ReturnType<CameraEventStore['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const db = this.store.database
    return {
      // An event is (peer, id): what one member announces never touches another's, whatever ids it reuses.
      put: db.prepare(`INSERT INTO camera_events (id, camera, node, peer, label, score, x1, y1, x2, y2, zones, start, end, updated)
        VALUES (@id, @camera, @node, @peer, @label, @score, @x1, @y1, @x2, @y2, @zones, @start, @end, @updated)
        ON CONFLICT (peer, id) DO UPDATE SET score = excluded.score, x1 = excluded.x1, y1 = excluded.y1, x2 = excluded.x2,
          y2 = excluded.y2, zones = excluded.zones, end = excluded.end, updated = excluded.updated
        WHERE camera_events.camera = excluded.camera AND camera_events.end IS NULL`),
      // Ended at when they were last written: the end of what was known of them.
      closeOwn: db.prepare<[string]>('UPDATE camera_events SET end = max(start, updated) WHERE end IS NULL AND peer = ?'),
      ownLabels: db.prepare<[string, number], { camera: string, label: string }>('SELECT DISTINCT camera, label FROM camera_events WHERE peer = ? LIMIT ?'),
      closeQuiet: db.prepare<[string, number]>('UPDATE camera_events SET end = max(start, updated) WHERE end IS NULL AND peer != ? AND updated < ?'),
      trimPeer: db.prepare<[string, string, number]>(`DELETE FROM camera_events WHERE peer = ? AND seq < (
        SELECT seq FROM camera_events WHERE peer = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`)
    }
  }

  /** Writes an event of `peer` (named `node`); an ended event is not changed again. */
  put (event: CameraEvent, node: string, peer: string, now = Date.now()): void {
    const [x1, y1, x2, y2] = event.box
    this.store.write(() => this.statements.put.run({ ...event, x1, y1, x2, y2, zones: JSON.stringify(event.zones), node, peer, updated: now }))
  }

  /** Events of `peer` left open by a run that ended without ending them: ended at when they were last written. */
  closeOwn (peer: string): void {
    this.store.write(() => this.statements.closeOwn.run(peer))
  }

  /** Each camera and label `peer` has events of (at most `limit`; none where the database cannot be read). */
  ownLabels (peer: string, limit = MAX_COUNTS_CLEARED): Array<{ camera: string, label: string }> {
    try {
      return this.statements.ownLabels.all(peer, limit)
    } catch {
      return []
    }
  }

  /** Other members' open events not written since `before` (their node died, or its end was lost): ended. */
  closeQuiet (self: string, before: number): void {
    this.store.write(() => this.statements.closeQuiet.run(self, before))
  }

  /** Which of `ids` are events of `peer` in the store (snapshots whose events are gone are deleted). */
  idsOf (peer: string, ids: readonly string[]): Set<string> {
    if (ids.length === 0) return new Set()
    this.idsStatement ??= this.store.database.prepare<[string, string], { id: string }>('SELECT id FROM camera_events WHERE peer = ? AND id IN (SELECT value FROM json_each(?))')
    return new Set(this.idsStatement.all(peer, JSON.stringify(ids)).map((r) => r.id))
  }

  /**
   * The events with this id, one per member at most: whose, and its name. An id begins with its event's start (in
   * base 36), so the lookup goes through the start index, never over the whole table.
   */
  byId (id: string): Array<{ peer: string, node: string }> {
    const start = Number.parseInt(id.split('-')[0] ?? '', 36)
    if (!Number.isSafeInteger(start)) return []
    this.byIdStatement ??= this.store.database.prepare<[number, string], { peer: string, node: string }>('SELECT peer, node FROM camera_events WHERE start = ? AND id = ? LIMIT 16')
    return this.byIdStatement.all(start, id)
  }

  /** Keeps the newest `keep` events of `peer`. */
  trimPeer (peer: string, keep: number): void {
    this.store.write(() => this.statements.trimPeer.run(peer, peer, keep - 1))
  }

  /** Newest first. */
  list (query: EventQuery): EventView[] {
    const where: string[] = []
    const params: Array<string | number> = []
    if (query.camera !== undefined) { where.push('camera = ?'); params.push(query.camera) }
    if (query.label !== undefined) { where.push('label = ?'); params.push(query.label) }
    if (query.zone !== undefined) { where.push('EXISTS (SELECT 1 FROM json_each(zones) WHERE value = ?)'); params.push(query.zone) }
    if (query.since !== undefined) { where.push('start >= ?'); params.push(query.since) }
    if (query.until !== undefined) { where.push('start < ?'); params.push(query.until) }
    const sql = `SELECT id, camera, node, label, score, x1, y1, x2, y2, zones, start, end FROM camera_events
      ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`} ORDER BY start DESC, seq DESC LIMIT ?`
    const rows = this.store.database.prepare<Array<string | number>, EventRow>(sql).all(...params, query.limit ?? 100)
    return rows.map((r) => ({
      id: r.id,
      camera: r.camera,
      node: r.node,
      label: r.label,
      score: r.score,
      box: [r.x1, r.y1, r.x2, r.y2],
      zones: JSON.parse(r.zones) as string[],
      start: isoTime(r.start),
      end: r.end === null ? null : isoTime(r.end)
    }))
  }
}

/**
 * When a camera's objects end: missed in 3 results in a row and unseen for 2 s (a missed detection or two is not
 * the end of an object, whatever rate the model keeps up; motion gating keeps frames coming for 2.5 s after
 * motion, so a departure is seen), or unseen for 2.5 refreshS with gating, 10 frame intervals, and at least 5 s
 * (a camera whose results stopped: CameraEvents.tick).
 */
export function endingOf (item: Pick<WorkItem, 'fps'> & { motion?: WorkItem['motion'] }): Ending {
  const motion = item.motion ?? DEFAULT_MOTION
  return {
    afterMs: 2_000,
    afterMisses: 3,
    staleMs: Math.max(5_000, motion.enabled ? 2.5 * motion.refreshS * 1000 : 0, 10 * 1000 / item.fps)
  }
}

/** How often events of objects no longer seen are ended, when no frame comes to do it (a camera that stalled). */
const EXPIRE_EVERY_MS = 1_000

/**
 * Events of this node's cameras: each result goes through the tracker, and what changes goes to the store, the
 * mesh (`noodle/1/media.events`) and MQTT (`<baseTopic>/<node>/events`, Frigate's `{type, before, after}`, and a
 * retained count per camera and label, `<baseTopic>/<node>/<camera>/<label>`).
 */
export class CameraEvents {
  private readonly store: CameraEventStore
  private readonly toMesh: (message: CameraEventMessage) => Promise<void>
  private readonly toMqtt: (topic: string, payload: string, retain: boolean) => boolean
  private readonly baseTopic: string
  private readonly node: string
  private readonly peer: string
  private readonly log: Logger
  private readonly now: () => number
  private readonly tracker: ObjectTracker
  private readonly snapshots: Pick<CameraSnapshots, 'changed' | 'observe' | 'cameraStopped'> | undefined
  /** Per camera, the counts last published, by label. */
  private readonly counts = new Map<string, Map<string, number>>()
  /** Per camera, when its last result arrived (this box's clock) and how long its objects may go unseen. */
  private readonly arrivals = new Map<string, { at: number, staleMs: number }>()
  private timer: NodeJS.Timeout | undefined

  constructor (components: {
    store: CameraEventStore
    toMesh: (message: CameraEventMessage) => Promise<void>
    /** Publishes to the MQTT broker; false when it could not (no broker, or not connected). */
    toMqtt: (topic: string, payload: string, retain: boolean) => boolean
    baseTopic: string
    /** This node's name and peer id. */
    node: string
    peer: string
    log: Logger
    now?: () => number
    newId?: (start: number) => string
    /** Where each event's best frame is snapshotted, and each camera's latest frame kept (none: no snapshots). */
    snapshots?: Pick<CameraSnapshots, 'changed' | 'observe' | 'cameraStopped'>
  }) {
    this.store = components.store
    this.snapshots = components.snapshots
    this.toMesh = components.toMesh
    this.toMqtt = components.toMqtt
    this.baseTopic = components.baseTopic
    this.node = components.node
    this.peer = components.peer
    this.log = components.log
    this.now = components.now ?? Date.now
    this.tracker = new ObjectTracker({ newId: components.newId ?? ((start) => `${start.toString(36)}-${randomBytes(4).toString('hex')}`) })
  }

  start (): void {
    // Events left open by the last run ended with it: their tracks are gone.
    this.store.closeOwn(this.peer)
    // The broker may still hold counts the last run left (killed before it sent 0, or stopped, or a camera taken
    // away, while the broker was away): every count this node has had is listed as sent, unknown, so the first
    // tick sends what is in view now, 0 for most (an object still in view reads 0 until the camera sees it again).
    for (const { camera, label } of this.store.ownLabels(this.peer)) {
      const sent = this.counts.get(camera) ?? new Map<string, number>()
      sent.set(label, Number.NaN)
      this.counts.set(camera, sent)
    }
    this.timer = setInterval(() => { this.tick() }, EXPIRE_EVERY_MS)
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /**
   * A camera whose results stopped coming (its source or model stalled) ends its events here; a camera that
   * delivers, however late its frames, ends them by frame time in observe(). Counts not yet published go again.
   */
  private tick (): void {
    const now = this.now()
    for (const [camera, { at, staleMs }] of this.arrivals) {
      if (now - at <= staleMs) continue
      this.arrivals.delete(camera)
      this.apply(this.tracker.expire(Number.MAX_SAFE_INTEGER, camera), camera)
    }
    for (const camera of this.counts.keys()) this.publishCounts(camera)
  }

  /** A result of one of this node's cameras (`item` its work item: its zones and frame rate). */
  observe (result: CameraResult, item: Pick<WorkItem, 'zones' | 'fps'> & { motion?: WorkItem['motion'] }): void {
    const ending = endingOf(item)
    this.arrivals.set(result.camera, { at: this.now(), staleMs: ending.staleMs })
    this.apply(this.tracker.observe(result.camera, result.at, result.detections, item.zones, ending), result.camera)
    // Before the camera asks for its next frame: the result's frame is still held (CameraSnapshots).
    this.snapshots?.observe(result)
  }

  /** A camera stopped here: its objects' events end. */
  cameraStopped (camera: string): void {
    this.arrivals.delete(camera)
    this.apply(this.tracker.stopCamera(camera), camera)
    this.snapshots?.cameraStopped(camera)
  }

  /** What changed of `camera`'s events: to the store, the mesh and MQTT, and the camera's counts after it. */
  private apply (changes: EventChange[], camera: string): void {
    this.snapshots?.changed(camera, changes)
    for (const change of changes) {
      this.store.put(change.after, this.node, this.peer, this.now())
      this.toMesh({ v: 1, type: change.type, event: change.after }).catch((err: unknown) => { this.log.debug({ err }, 'camera event not published') })
      this.toMqtt(`${this.baseTopic}/${this.node}/events`, JSON.stringify({ type: change.type, before: change.before, after: change.after }), false)
    }
    this.publishCounts(camera)
  }

  /**
   * Retained counts of what a camera has in view, per label: sent when they change, 0 when the last one goes. A
   * count the broker did not take (not connected) stays unsent, and goes again with the next tick.
   */
  private publishCounts (camera: string): void {
    const inView = this.tracker.inView(camera)
    const sent = this.counts.get(camera) ?? new Map<string, number>()
    for (const label of new Set([...inView.keys(), ...sent.keys()])) {
      const count = inView.get(label) ?? 0
      if (sent.get(label) === count) continue
      if (!this.toMqtt(`${this.baseTopic}/${this.node}/${camera}/${label}`, String(count), true)) continue
      if (count === 0) sent.delete(label)
      else sent.set(label, count)
    }
    // A label whose 0 was not taken stays listed (as sent: its last count) until it is.
    if (sent.size === 0 && inView.size === 0) this.counts.delete(camera)
    else this.counts.set(camera, sent)
  }
}

/** A member's announced events, per window, at most: a member that sends more has the rest refused (`flood`). */
const ANNOUNCED_PER_WINDOW = 200
const ANNOUNCE_WINDOW_MS = 10_000
/** Events of one other member this box keeps at most (its newest): one member cannot push out the rest. */
export const MAX_ANNOUNCED_PER_MEMBER = 5_000
/** An event time this far ahead of this box's clock is a clock gone wrong, or a lie (`clock`). */
const MAX_CLOCK_AHEAD_MS = 60_000
/**
 * An announced event still open with nothing heard of it for this long is ended here: its node updates an event
 * in view every 10 s, so its node died, left, or its end was lost.
 */
export const QUIET_AFTER_MS = 35_000
const SWEEP_EVERY_MS = 5_000

/**
 * Events other members announce, kept so this box lists them too. A member speaks only for the cameras its own
 * beacon says it runs (`not-running` otherwise), and only so fast; both refusals are counted.
 */
export class AnnouncedEvents {
  private readonly store: CameraEventStore
  private readonly self: string
  private readonly sender: (peer: string) => { name: string, running: readonly string[] } | undefined
  private readonly refuse: (reason: 'not-running' | 'flood' | 'clock') => void
  private readonly now: () => number
  private readonly windows = new BoundedMap<string, { start: number, count: number }>(1_024)
  /** Per member, events written since its rows were last trimmed. */
  private readonly written = new BoundedMap<string, number>(1_024)
  private timer: NodeJS.Timeout | undefined

  constructor (components: {
    store: CameraEventStore
    /** This node's peer id: its own events are not ended for quiet. */
    self: string
    /** An alive member by peer id: its name and what it runs; undefined when it is not one. */
    sender: (peer: string) => { name: string, running: readonly string[] } | undefined
    refuse: (reason: 'not-running' | 'flood' | 'clock') => void
    now?: () => number
  }) {
    this.store = components.store
    this.self = components.self
    this.sender = components.sender
    this.refuse = components.refuse
    this.now = components.now ?? Date.now
  }

  start (): void {
    this.timer = setInterval(() => { this.store.closeQuiet(this.self, this.now() - QUIET_AFTER_MS) }, SWEEP_EVERY_MS)
  }

  stop (): void {
    clearInterval(this.timer)
  }

  take (message: CameraEventMessage, from: string): void {
    const member = this.sender(from)
    if (member === undefined || !member.running.includes(message.event.camera)) {
      this.refuse('not-running')
      return
    }
    const now = this.now()
    const { start, end } = message.event
    if (start > now + MAX_CLOCK_AHEAD_MS || (end !== null && end > now + MAX_CLOCK_AHEAD_MS)) {
      this.refuse('clock')
      return
    }
    let window = this.windows.get(from)
    if (window === undefined || now - window.start >= ANNOUNCE_WINDOW_MS) {
      window = { start: now, count: 0 }
      this.windows.set(from, window)
    }
    if (++window.count > ANNOUNCED_PER_WINDOW) {
      this.refuse('flood')
      return
    }
    this.store.put(message.event, member.name, from, now)
    // Trimmed every hundred writes, not every write: a trim reads the member's newest rows through an index.
    const written = (this.written.get(from) ?? 0) + 1
    this.written.set(from, written % 100)
    if (written >= 100) this.store.trimPeer(from, MAX_ANNOUNCED_PER_MEMBER)
  }
}
