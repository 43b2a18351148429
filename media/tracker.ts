import type { CameraEvent } from '../protocols/media.ts'
import type { Zones } from '../protocols/work.ts'
import { iou } from './boxes.ts'
import type { Detection } from './detections.ts'

/**
 * When a camera's objects end: missed in `afterMisses` results in a row and unseen for `afterMs` (a detector that
 * misses a frame or two ends nothing), or unseen for `staleMs` whatever the results (a camera whose frames are
 * gated by motion is inferred only every refreshS while nothing moves).
 */
export interface Ending {
  afterMs: number
  afterMisses: number
  staleMs: number
}

/** What happened to an event, Frigate's way: its state before the change (null when it is new) and after. */
export interface EventChange {
  type: 'new' | 'update' | 'end'
  before: CameraEvent | null
  after: CameraEvent
}

/** Objects one camera follows at most: a model that finds a thousand things a frame makes no thousand events. */
export const MAX_TRACKS_PER_CAMERA = 64
/** A detection is the same object as a track's when their boxes overlap by this much. */
const MATCH_IOU = 0.3
/** Frames an object must be seen in before it is an event: one frame's false detection makes none. */
const FRAMES_TO_START = 2
/** A better score is news when it is better by this much. */
const SCORE_STEP = 0.05

interface Track {
  event: CameraEvent
  /** Frames it was seen in so far (it becomes an event at FRAMES_TO_START). */
  frames: number
  lastSeen: number
  /** Results in a row it was not in. */
  misses: number
  ending: Ending
  /** The event as last announced, and when. */
  sent: CameraEvent | null
  sentAt: number
}

/** Whether a point is inside a polygon (even–odd rule). */
export function insidePolygon (x: number, y: number, polygon: ReadonlyArray<readonly [number, number]>): boolean {
  let inside = false
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i] as [number, number]
    const [xj, yj] = polygon[j] as [number, number]
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside
  }
  return inside
}

/** The zones a box is in: where its bottom centre (where an object stands) is. */
export function zonesOf (box: Detection['box'], zones: Zones | undefined): string[] {
  if (zones === undefined) return []
  const x = (box[0] + box[2]) / 2
  const y = box[3]
  return Object.entries(zones).filter(([, polygon]) => insidePolygon(x, y, polygon)).map(([name]) => name)
}

/**
 * Turns the detections of each frame into events: a detection that overlaps a track of its label (IoU, best pairs
 * first) updates it, the rest start tracks; a track seen in FRAMES_TO_START frames is an event (`new`), changes
 * when its score gets better, when it enters a zone, or every `refreshMs` while in view (`update`), and ends as its
 * camera's Ending says (`end`). Time is the frames' own, and `expire` is given it.
 */
export class ObjectTracker {
  private readonly tracks = new Map<string, Track[]>()
  private readonly newId: (start: number) => string
  private readonly refreshMs: number

  constructor (options: { newId: (start: number) => string, refreshMs?: number }) {
    this.newId = options.newId
    this.refreshMs = options.refreshMs ?? 10_000
  }

  /** One frame's detections of `camera`, decoded at `at`. */
  observe (camera: string, at: number, detections: readonly Detection[], zones: Zones | undefined, ending: Ending): EventChange[] {
    const tracks = this.tracks.get(camera) ?? []
    this.tracks.set(camera, tracks)
    const pairs: Array<{ track: Track, detection: Detection, overlap: number }> = []
    for (const track of tracks) {
      for (const detection of detections) {
        if (detection.label !== track.event.label) continue
        const overlap = iou(track.event.box, detection.box)
        if (overlap >= MATCH_IOU) pairs.push({ track, detection, overlap })
      }
    }
    pairs.sort((a, b) => b.overlap - a.overlap)
    const matched = new Set<Track>()
    const used = new Set<Detection>()
    const changes: EventChange[] = []
    for (const { track, detection } of pairs) {
      if (matched.has(track) || used.has(detection)) continue
      matched.add(track)
      used.add(detection)
      const change = this.follow(track, at, detection, zones)
      if (change !== undefined) changes.push(change)
    }
    for (const detection of detections) {
      if (used.has(detection) || tracks.length >= MAX_TRACKS_PER_CAMERA) continue
      tracks.push({
        event: { id: '', camera, label: detection.label, score: detection.score, box: detection.box, zones: zonesOf(detection.box, zones), start: at, end: null },
        frames: 1,
        lastSeen: at,
        misses: 0,
        ending,
        sent: null,
        sentAt: at
      })
    }
    // Tracks missed in this frame: one seen once is dropped (it never became an event); an event's misses count.
    const gone: Track[] = []
    const kept = tracks.filter((t) => {
      if (matched.has(t) || t.lastSeen === at) return true
      if (t.sent === null) return false
      t.misses++
      if (t.misses < t.ending.afterMisses || at - t.lastSeen < t.ending.afterMs) return true
      gone.push(t)
      return false
    })
    tracks.splice(0, tracks.length, ...kept)
    return [...changes, ...gone.map((t) => this.end(t)), ...this.expire(at, camera)]
  }

  /** Ends the events of `camera` (every camera when not given) not seen for their staleMs by `now`. */
  expire (now: number, camera?: string): EventChange[] {
    const changes: EventChange[] = []
    for (const [id, tracks] of this.tracks) {
      if (camera !== undefined && id !== camera) continue
      for (const track of tracks.filter((t) => now - t.lastSeen > t.ending.staleMs)) {
        tracks.splice(tracks.indexOf(track), 1)
        if (track.sent !== null) changes.push(this.end(track))
      }
      if (tracks.length === 0) this.tracks.delete(id)
    }
    return changes
  }

  /** Ends every event of a camera that stopped here (it moved, or its node stops). */
  stopCamera (camera: string): EventChange[] {
    const tracks = this.tracks.get(camera) ?? []
    this.tracks.delete(camera)
    return tracks.filter((t) => t.sent !== null).map((t) => this.end(t))
  }

  /** How many objects of each label `camera` has in view now (events only). */
  inView (camera: string): Map<string, number> {
    const counts = new Map<string, number>()
    for (const t of this.tracks.get(camera) ?? []) if (t.sent !== null) counts.set(t.event.label, (counts.get(t.event.label) ?? 0) + 1)
    return counts
  }

  private follow (track: Track, at: number, detection: Detection, zones: Zones | undefined): EventChange | undefined {
    track.frames++
    track.lastSeen = at
    track.misses = 0
    const entered = zonesOf(detection.box, zones).filter((z) => !track.event.zones.includes(z))
    track.event = {
      ...track.event,
      box: detection.box,
      score: Math.max(track.event.score, detection.score),
      zones: [...track.event.zones, ...entered]
    }
    if (track.sent === null) {
      if (track.frames < FRAMES_TO_START) return undefined
      track.event.id = this.newId(track.event.start)
      return this.send(track, 'new', at)
    }
    const news = entered.length > 0 || track.event.score >= track.sent.score + SCORE_STEP || at - track.sentAt >= this.refreshMs
    return news ? this.send(track, 'update', at) : undefined
  }

  private send (track: Track, type: 'new' | 'update', at: number): EventChange {
    const before = track.sent
    track.sent = { ...track.event }
    track.sentAt = at
    return { type, before, after: track.sent }
  }

  private end (track: Track): EventChange {
    return { type: 'end', before: track.sent, after: { ...track.event, end: track.lastSeen } }
  }
}
