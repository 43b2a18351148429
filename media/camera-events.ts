import { randomBytes } from 'node:crypto'
import type { Logger } from '../common/logger.ts'
import type { TableSet } from '../common/schema.ts'
import { DAY_MS } from '../common/schema.ts'
import { BoundedMap } from '../common/bounded-map.ts'
import type { Database as DB } from 'better-sqlite3'
import type { CameraEvent, CameraEventMessage } from '../protocols/media.ts'
import type { WorkItem } from '../protocols/work.ts'
import type { CameraResult } from './camera.ts'
import { ObjectTracker } from './tracker.ts'
import type { EventChange } from './tracker.ts'

/** Objects cameras followed: this node's cameras' and those other members announced (CameraEventStore). */
export const CAMERA_EVENT_TABLES: TableSet = {
  name: 'camera events',
  migrations: [
    {
      version: 11,
      sql: `
      CREATE TABLE camera_events (
        seq    INTEGER PRIMARY KEY,          -- insertion order: retention's row cap keeps the newest
        id     TEXT NOT NULL UNIQUE,         -- the event's id (protocols/media.ts EVENT_ID)
        camera TEXT NOT NULL,
        node   TEXT NOT NULL,                -- the name of the member whose camera saw it
        peer   TEXT NOT NULL,                -- and its peer id: only it may change the event
        label  TEXT NOT NULL,
        score  REAL NOT NULL,                -- the best seen
        x1     INTEGER NOT NULL,             -- the latest box, in the source frame's pixels
        y1     INTEGER NOT NULL,
        x2     INTEGER NOT NULL,
        y2     INTEGER NOT NULL,
        zones  TEXT NOT NULL,                -- JSON: the zones it entered, in order
        start  INTEGER NOT NULL,             -- ms since the epoch
        end    INTEGER                       -- null while the object is in view
      );
      CREATE INDEX camera_events_start ON camera_events (start);
    `
    }
  ],
  retention: [{ table: 'camera_events', time: 'start', key: 'seq', maxAgeMs: 30 * DAY_MS, maxRows: 100_000 }]
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

interface EventRow { id: string, camera: string, node: string, label: string, score: number, x1: number, y1: number, x2: number, y2: number, zones: string, start: number, end: number | null }

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
      // An event is changed only by the peer that announced it first: an id another member reuses changes nothing.
      put: db.prepare(`INSERT INTO camera_events (id, camera, node, peer, label, score, x1, y1, x2, y2, zones, start, end)
        VALUES (@id, @camera, @node, @peer, @label, @score, @x1, @y1, @x2, @y2, @zones, @start, @end)
        ON CONFLICT (id) DO UPDATE SET score = excluded.score, x1 = excluded.x1, y1 = excluded.y1, x2 = excluded.x2,
          y2 = excluded.y2, zones = excluded.zones, end = excluded.end
        WHERE camera_events.peer = excluded.peer AND camera_events.camera = excluded.camera`),
      closeOpen: db.prepare<[number, string]>('UPDATE camera_events SET end = max(start, ?) WHERE end IS NULL AND peer = ?')
    }
  }

  put (event: CameraEvent, node: string, peer: string): void {
    const [x1, y1, x2, y2] = event.box
    this.store.write(() => this.statements.put.run({ ...event, x1, y1, x2, y2, zones: JSON.stringify(event.zones), node, peer }))
  }

  /** Events of `peer` still open (from before a restart, or a member that died): ended at `at`. */
  closeOpen (peer: string, at: number): void {
    this.store.write(() => this.statements.closeOpen.run(at, peer))
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
      start: new Date(r.start).toISOString(),
      end: r.end === null ? null : new Date(r.end).toISOString()
    }))
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
  private readonly toMqtt: (topic: string, payload: string, retain: boolean) => void
  private readonly baseTopic: string
  private readonly node: string
  private readonly peer: string
  private readonly log: Logger
  private readonly now: () => number
  private readonly tracker: ObjectTracker
  /** Per camera, the counts last published, by label. */
  private readonly counts = new Map<string, Map<string, number>>()
  private timer: NodeJS.Timeout | undefined

  constructor (components: {
    store: CameraEventStore
    toMesh: (message: CameraEventMessage) => Promise<void>
    toMqtt: (topic: string, payload: string, retain: boolean) => void
    baseTopic: string
    /** This node's name and peer id. */
    node: string
    peer: string
    log: Logger
    now?: () => number
    newId?: (start: number) => string
  }) {
    this.store = components.store
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
    this.store.closeOpen(this.peer, this.now())
    this.timer = setInterval(() => { this.apply(this.tracker.expire(this.now())) }, EXPIRE_EVERY_MS)
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** A result of one of this node's cameras (`item` its work item: its zones and frame rate). */
  observe (result: CameraResult, item: Pick<WorkItem, 'zones' | 'fps'>): void {
    // Gone for five frames, and at least 2 s: a missed detection or two is not the end of an object.
    const endAfterMs = Math.max(2_000, 5 * 1000 / item.fps)
    this.apply(this.tracker.observe(result.camera, result.at, result.detections, item.zones, endAfterMs), result.camera)
  }

  /** A camera stopped here: its objects' events end. */
  cameraStopped (camera: string): void {
    this.apply(this.tracker.stopCamera(camera), camera)
  }

  private apply (changes: EventChange[], camera?: string): void {
    for (const change of changes) {
      this.store.put(change.after, this.node, this.peer)
      this.toMesh({ v: 1, type: change.type, event: change.after }).catch((err: unknown) => { this.log.debug({ err }, 'camera event not published') })
      this.toMqtt(`${this.baseTopic}/${this.node}/events`, JSON.stringify({ type: change.type, before: change.before, after: change.after }), false)
    }
    const cameras = new Set(changes.map((c) => c.after.camera))
    if (camera !== undefined) cameras.add(camera)
    for (const c of cameras) this.publishCounts(c)
  }

  /** Retained counts of what a camera has in view, per label: sent when they change, 0 when the last one goes. */
  private publishCounts (camera: string): void {
    const now = this.tracker.inView(camera)
    const last = this.counts.get(camera) ?? new Map<string, number>()
    for (const label of new Set([...now.keys(), ...last.keys()])) {
      const count = now.get(label) ?? 0
      if (count === (last.get(label) ?? 0) && last.has(label)) continue
      this.toMqtt(`${this.baseTopic}/${this.node}/${camera}/${label}`, String(count), true)
    }
    if (now.size === 0) this.counts.delete(camera)
    else this.counts.set(camera, now)
  }
}

/** A member's announced events, per window, at most: a member that sends more has the rest refused (`flood`). */
const ANNOUNCED_PER_WINDOW = 200
const ANNOUNCE_WINDOW_MS = 10_000

/**
 * Events other members announce, kept so this box lists them too. A member speaks only for the cameras its own
 * beacon says it runs (`not-running` otherwise), and only so fast; both refusals are counted.
 */
export class AnnouncedEvents {
  private readonly store: CameraEventStore
  private readonly sender: (peer: string) => { name: string, running: readonly string[] } | undefined
  private readonly refuse: (reason: 'not-running' | 'flood') => void
  private readonly now: () => number
  private readonly windows = new BoundedMap<string, { start: number, count: number }>(1_024)

  constructor (components: {
    store: CameraEventStore
    /** An alive member by peer id: its name and what it runs; undefined when it is not one. */
    sender: (peer: string) => { name: string, running: readonly string[] } | undefined
    refuse: (reason: 'not-running' | 'flood') => void
    now?: () => number
  }) {
    this.store = components.store
    this.sender = components.sender
    this.refuse = components.refuse
    this.now = components.now ?? Date.now
  }

  take (message: CameraEventMessage, from: string): void {
    const member = this.sender(from)
    if (member === undefined || !member.running.includes(message.event.camera)) {
      this.refuse('not-running')
      return
    }
    const now = this.now()
    let window = this.windows.get(from)
    if (window === undefined || now - window.start >= ANNOUNCE_WINDOW_MS) {
      window = { start: now, count: 0 }
      this.windows.set(from, window)
    }
    if (++window.count > ANNOUNCED_PER_WINDOW) {
      this.refuse('flood')
      return
    }
    this.store.put(message.event, member.name, from)
  }
}
