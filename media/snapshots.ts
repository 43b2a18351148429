import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chmod, lstat, mkdir, open, readdir, rename, statfs, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { NoodleError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { EVENT_ID } from '../protocols/media.ts'
import { iou } from './boxes.ts'
import type { CameraResult, ResultFrame } from './camera.ts'
import type { Detection } from './detections.ts'
import { MAX_SNAPSHOT_BYTES } from './snapshot-graph.ts'
import type { Box } from './snapshot-graph.ts'
import type { EventChange } from './tracker.ts'

/** 404: no such event, here or announced by a member. */
export class UnknownEventError extends NoodleError {
  readonly httpStatus = 404

  constructor (id: string) {
    super('ERR_UNKNOWN_EVENT', `no event ${id} is known here (see noodle events)`)
  }
}

/**
 * 404: the event is known, but this box has no snapshot of it (another member's, or none kept); `peer` is the
 * member whose camera saw it, when it is another's (the API asks that member for it).
 */
export class NoSnapshotError extends NoodleError {
  readonly httpStatus = 404
  readonly peer: string | undefined

  constructor (message: string, peer?: string) {
    super('ERR_NO_SNAPSHOT', message)
    this.peer = peer
  }
}

/** 404: the camera does not run on this box (or has no result yet): its latest frame is where it runs. */
export class CameraNotHereError extends NoodleError {
  readonly httpStatus = 404

  constructor (message: string) {
    super('ERR_CAMERA_NOT_HERE', message)
  }
}

/**
 * 503: a frame could not be had now (the decoder restarted, FFmpeg failed); asking again in a second may do. What
 * the decode thread says (FrameSource's SnapshotFailedError, which has no status) reaches the API only as this.
 */
export class SnapshotUnavailableError extends NoodleError {
  readonly httpStatus = 503
  readonly retryAfterS = 1

  constructor (message: string, options?: ErrorOptions) {
    super('ERR_SNAPSHOT_UNAVAILABLE', message, options)
  }
}

/**
 * A snapshot was to be named by something that is not an event id (put() is given our own ids only: a bug). Never
 * reaches the API, whose paths are checked against EVENT_ID where they enter.
 */
export class NotAnEventIdError extends NoodleError {
  constructor (id: string) {
    super('ERR_NOT_AN_EVENT_ID', `not an event id: ${JSON.stringify(id).slice(0, 40)}`)
  }
}

/** Snapshots take at most this share of the data dir's filesystem by default (events.snapshotMaxBytes unset)… */
export const DEFAULT_SNAPSHOT_SHARE = 0.05
/** …and never more than this. */
export const DEFAULT_SNAPSHOT_CAP_BYTES = 2 * 1024 ** 3
/** How often snapshots whose events are gone (retention, the row cap) are looked for. */
const SWEEP_EVERY_MS = 10 * 60_000
/** Event ids asked of the store at once by a sweep, between turns of the event loop. */
const SWEEP_CHUNK = 500
/** The snapshots folder's mode and each snapshot's, whatever was there and whatever the umask (docs/files.md). */
const FOLDER_MODE = 0o700
const FILE_MODE = 0o600
/** Files deleted at once at most (a sweep or the cap may delete thousands), the event loop turning between. */
const DELETE_CHUNK = 16
/** A snapshot file's name: the event's id (EVENT_ID), nothing a request gave. */
const SNAPSHOT_FILE = /^([0-9a-z]{1,12}-[0-9a-f]{8})\.jpg$/
/** What a write left behind when the agent stopped in the middle of it (a counter before: an earlier version's). */
const TEMP_FILE = /^\.[0-9a-z]{1,12}-[0-9a-f]{8}\.(?:[0-9a-f]{16}|\d+)\.tmp$/
/**
 * A snapshot is read through this: never through a link (O_NOFOLLOW: ELOOP), never waiting for a FIFO's writer
 * (O_NONBLOCK, which a regular file ignores); what it opened is checked to be a regular file.
 */
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK

/** events.snapshotMaxBytes when unset: 5 % of the filesystem, at most 2 GiB (about 20,000 snapshots at 100 KB). */
export function defaultSnapshotMaxBytes (filesystemBytes: number): number {
  return Math.min(Math.floor(filesystemBytes * DEFAULT_SNAPSHOT_SHARE), DEFAULT_SNAPSHOT_CAP_BYTES)
}

/** The events' side of the store, as snapshots need it (CameraEventStore). */
export interface SnapshotEvents {
  /** Which of `ids` are events of this box's own cameras still in the store. */
  ownIds: (ids: readonly string[]) => Set<string>
}

/**
 * Event snapshots on disk, `<dir>/<event id>.jpg`, each written whole (a temporary file renamed over it), never
 * named by anything but our own event ids. A running total keeps them under `maxBytes`, the oldest deleted first;
 * a snapshot lives as long as its event (`events.retentionDays`, the store's row cap): a sweep at start and every
 * 10 minutes deletes those whose events are gone. Everything is asynchronous: the index of what a restart found is
 * built in the background, and no write walks the folder.
 */
export class SnapshotStore {
  private readonly dir: string
  private readonly events: SnapshotEvents
  private readonly log: Logger
  private maxBytes: number | undefined
  /** Snapshot bytes by event id, oldest first (a rewrite moves to the end). */
  private readonly files = new Map<string, number>()
  private total = 0
  /** Removed while the start's index was being built: a file it listed before its removal is not taken back. */
  private removedWhileIndexing: Set<string> | undefined = new Set()
  /** The start's indexing and first sweep (indexed() waits for it). */
  private started: Promise<void> | undefined
  /** The sweep running now, the start's or a timer's (one at a time; stop() waits for it). */
  private sweeping: Promise<void> | undefined
  private readonly writing = new Set<Promise<unknown>>()
  /** Snapshots forgotten whose files are still to be deleted, and the deleting of them (stop() waits for it). */
  private readonly doomed: string[] = []
  private deleting: Promise<void> | undefined
  /** How often a sweep runs (SWEEP_EVERY_MS; tests shorten it), and its timer. */
  private readonly sweepEveryMs: number
  private timer: NodeJS.Timeout | undefined

  constructor (components: { dir: string, events: SnapshotEvents, log: Logger, maxBytes?: number, sweepEveryMs?: number }) {
    this.dir = components.dir
    this.events = components.events
    this.log = components.log
    this.maxBytes = components.maxBytes
    this.sweepEveryMs = components.sweepEveryMs ?? SWEEP_EVERY_MS
  }

  async start (): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: FOLDER_MODE })
    // mkdir leaves a folder already there as it is, and the umask narrows a new one: docs/files.md says 0700.
    await chmod(this.dir, FOLDER_MODE)
    if (this.maxBytes === undefined) {
      const fs = await statfs(this.dir)
      this.maxBytes = defaultSnapshotMaxBytes(fs.blocks * fs.bsize)
    }
    this.started = this.inBackground(async () => {
      try {
        await this.index()
      } catch (err) {
        this.log.warn({ err }, 'snapshots could not be indexed')
        return
      }
      await this.sweep()
    })
    // A sweep that fails (the event store cannot answer) is logged: nothing it throws may end the agent.
    this.timer = setInterval(() => { void this.inBackground(async () => { await this.sweep() }) }, this.sweepEveryMs).unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await this.sweeping
    await Promise.allSettled([...this.writing])
    await this.deleting
  }

  /** Resolves once what the start found is indexed and swept (the agent does not wait for it; tests do). */
  async indexed (): Promise<void> {
    await this.started
  }

  /** What the snapshots take now, and at most. */
  usage (): { files: number, bytes: number, maxBytes: number } {
    return { files: this.files.size, bytes: this.total, maxBytes: this.maxBytes ?? 0 }
  }

  has (id: string): boolean {
    return this.files.has(id)
  }

  /** Whether snapshots are kept at all (events.snapshotMaxBytes 0: none). */
  takes (): boolean {
    return this.maxBytes !== 0
  }

  /** An event's snapshot, written whole over any earlier one; then the oldest go while over maxBytes. */
  async put (id: string, jpeg: Uint8Array): Promise<void> {
    // Our own ids only reach here; checked again, as this names a file.
    if (!EVENT_ID.test(id)) throw new NotAnEventIdError(id)
    if (this.maxBytes === undefined || jpeg.length > this.limit()) return
    // A name nobody can plant a link at beforehand, created here or failing (wx: O_EXCL, which follows no link).
    const temp = join(this.dir, `.${id}.${randomBytes(8).toString('hex')}.tmp`)
    const write = (async () => {
      // Not created (something is there): nothing of ours to clean up.
      const file = await open(temp, 'wx', FILE_MODE)
      try {
        try {
          await file.writeFile(jpeg)
          // Whatever the umask made of it: docs/files.md says 0600.
          await file.chmod(FILE_MODE)
        } finally {
          await file.close()
        }
        await rename(temp, join(this.dir, `${id}.jpg`))
      } catch (err) {
        await unlink(temp).catch(() => {})
        throw err
      }
    })()
    this.writing.add(write)
    try {
      await write
    } finally {
      this.writing.delete(write)
    }
    this.forget(id)
    this.files.set(id, jpeg.length)
    this.total += jpeg.length
    await this.trim()
  }

  /**
   * An event's snapshot, or undefined when there is none (never taken, or deleted), or what is there is no snapshot
   * of ours: a link (never followed), anything but a regular file, or larger than a snapshot can be (then it is no
   * longer indexed, and left where it is).
   */
  async read (id: string): Promise<Buffer | undefined> {
    if (!EVENT_ID.test(id) || !this.files.has(id)) return undefined
    const path = join(this.dir, `${id}.jpg`)
    let file
    try {
      file = await open(path, READ_FLAGS)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') {
        // Deleted meanwhile (by the cap), or by hand.
        await this.remove([id])
        return undefined
      }
      // ELOOP: a link; ENXIO: a socket.
      if (code === 'ELOOP' || code === 'ENXIO') return this.refuse(id, code)
      throw err
    }
    try {
      const s = await file.stat()
      if (!s.isFile()) return this.refuse(id, 'not a regular file')
      if (s.size > this.limit()) return this.refuse(id, `${s.size} bytes`)
      // What fstat said, at most: a file that grows meanwhile is not read past it.
      const bytes = Buffer.alloc(s.size)
      let at = 0
      while (at < bytes.length) {
        const { bytesRead } = await file.read(bytes, at, bytes.length - at, at)
        if (bytesRead === 0) break
        at += bytesRead
      }
      return bytes.subarray(0, at)
    } finally {
      await file.close()
    }
  }

  /** The largest snapshot kept: what maxBytes allows, never more than a snapshot can be. */
  private limit (): number {
    return Math.min(this.maxBytes ?? MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_BYTES)
  }

  /** What is under a snapshot's name is none of ours: no longer indexed (nor counted), left alone, said once. */
  private refuse (id: string, why: string): undefined {
    this.forget(id)
    this.log.warn({ event: id, why }, 'snapshot file refused: not a regular file of a snapshot\'s size (left as it is)')
    return undefined
  }

  /**
   * Snapshots whose events are gone (retention, the row cap, an event the store could not keep) are deleted; then
   * the oldest while over maxBytes. The store is asked a chunk of ids at a time, the event loop turning between.
   * Resolves once their files are deleted.
   */
  async sweep (): Promise<void> {
    const ids = [...this.files.keys()]
    let removed = 0
    for (let i = 0; i < ids.length; i += SWEEP_CHUNK) {
      if (i > 0) await yieldToLoop()
      const chunk = ids.slice(i, i + SWEEP_CHUNK)
      const kept = this.events.ownIds(chunk)
      const gone = chunk.filter((id) => !kept.has(id) && this.files.has(id))
      removed += gone.length
      await this.remove(gone)
    }
    await this.trim()
    if (removed > 0) this.log.info({ removed, files: this.files.size, bytes: this.total }, 'snapshots of events no longer kept deleted')
  }

  /** A sweep (and at start the indexing) in the background, never two at once, its failure logged: it never rejects. */
  private async inBackground (work: () => Promise<void>): Promise<void> {
    if (this.sweeping !== undefined) return await this.sweeping
    const running: Promise<void> = work()
      .catch((err: unknown) => { this.log.warn({ err }, 'snapshots could not be swept') })
      .finally(() => { if (this.sweeping === running) this.sweeping = undefined })
    this.sweeping = running
    await running
  }

  /** What an earlier run left: snapshots, oldest first (by when they were written), and half-written files. */
  private async index (): Promise<void> {
    try {
      const found: Array<{ id: string, bytes: number, at: number }> = []
      for (const name of await readdir(this.dir)) {
        if (TEMP_FILE.test(name)) {
          await unlink(join(this.dir, name)).catch(() => {})
          continue
        }
        const id = SNAPSHOT_FILE.exec(name)?.[1]
        if (id === undefined || this.files.has(id)) continue
        try {
          // The entry itself, never what a link points at: only regular files of a snapshot's size are ours.
          const s = await lstat(join(this.dir, name))
          if (s.isFile() && s.size <= this.limit()) found.push({ id, bytes: s.size, at: s.mtimeMs })
        } catch {
          // Gone meanwhile.
        }
      }
      found.sort((a, b) => a.at - b.at)
      const since = [...this.files]
      this.files.clear()
      this.total = 0
      for (const { id, bytes } of found) {
        if (this.removedWhileIndexing?.has(id) === true) continue
        this.files.set(id, bytes)
        this.total += bytes
      }
      // Written since the start: newer than anything found.
      for (const [id, bytes] of since) {
        this.forget(id)
        this.files.set(id, bytes)
        this.total += bytes
      }
    } finally {
      // Indexed or failed (the folder could not be listed): removals need not be remembered any more.
      this.removedWhileIndexing = undefined
    }
    await this.trim()
  }

  /** The oldest snapshots go while over maxBytes; resolves once their files are deleted. */
  private async trim (): Promise<void> {
    const max = this.maxBytes ?? Number.POSITIVE_INFINITY
    const over: string[] = []
    let total = this.total
    for (const [id, bytes] of this.files) {
      if (total <= max) break
      over.push(id)
      total -= bytes
    }
    await this.remove(over)
  }

  private forget (id: string): void {
    const bytes = this.files.get(id)
    if (bytes === undefined) return
    this.files.delete(id)
    this.total -= bytes
  }

  /**
   * Snapshots forgotten at once (the total falls now), their files deleted DELETE_CHUNK at a time with every other
   * removal's (one queue): resolves once they are.
   */
  private async remove (ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      this.forget(id)
      this.removedWhileIndexing?.add(id)
      this.doomed.push(id)
    }
    if (this.deleting === undefined && this.doomed.length > 0) this.deleting = this.deleteDoomed()
    await this.deleting
  }

  private async deleteDoomed (): Promise<void> {
    try {
      while (this.doomed.length > 0) {
        // One written again since it was doomed is kept (its file is the new one).
        const chunk = this.doomed.splice(0, DELETE_CHUNK).filter((id) => !this.files.has(id))
        await Promise.all(chunk.map(async (id) => {
          await unlink(join(this.dir, `${id}.jpg`)).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') this.log.warn({ err: err.message, event: id }, 'snapshot could not be deleted')
          })
        }))
        await yieldToLoop()
      }
    } finally {
      this.deleting = undefined
    }
  }
}

/** Event snapshots of one camera start at most this often: each costs its decode thread a few ms. */
export const EVENT_SNAPSHOT_INTERVAL_MS = 1_000
/** A snapshot is taken again when the event is seen with a score better by this much. */
const BETTER_BY = 0.02
/** A detection is an event's object when it overlaps the event's last box by this much (the tracker's rule). */
const MATCH_IOU = 0.3

interface OpenEvent {
  label: string
  box: Detection['box']
  /** The score its snapshot was taken at (-1: none yet). */
  score: number
}

interface CameraState {
  latest?: { frame: ResultFrame, boxes: Box[] }
  /** The snapshot being made (one per camera at a time), and when the last event snapshot started. */
  busy?: Promise<unknown>
  /**
   * An event snapshot due while the slot was busy (a latest.jpg being made): it runs as soon as the slot is free,
   * before any latest.jpg asked meanwhile, so that readers of latest.jpg never starve events.
   */
  next?: () => Promise<void>
  lastEventAt: number
  /** The latest frame's JPEG, by its frame's seq; and the one being made, shared by every caller meanwhile. */
  cached?: { seq: number, jpeg: Uint8Array }
  making?: { seq: number, jpeg: Promise<Uint8Array> }
  events: Map<string, OpenEvent>
}

/**
 * What each camera here snapshots: for each of its events, the frame where the event's object scored best, with
 * its box drawn (SnapshotStore), at most one a second per camera, one at a time; and on request its latest frame
 * with the latest result's boxes (`latest.jpg`), made once per result whoever asks and however many at once.
 * Frames are JPEG'd in the camera's decode thread (FrameSource.snapshot): what reaches here is bytes.
 */
export class CameraSnapshots {
  private readonly store: SnapshotStore
  private readonly events: { find: (id: string) => Array<{ node: string, peer: string, own: boolean }> }
  private readonly log: Logger
  private readonly now: () => number
  private readonly cameras = new Map<string, CameraState>()

  constructor (components: {
    store: SnapshotStore
    /** The events known by an id: whose (own: this box's cameras'), and their node by name and peer id. */
    events: { find: (id: string) => Array<{ node: string, peer: string, own: boolean }> }
    log: Logger
    now?: () => number
  }) {
    this.store = components.store
    this.events = components.events
    this.log = components.log
    this.now = components.now ?? Date.now
  }

  /** What happened to a camera's events (CameraEvents): where each event's object was last, and those that ended. */
  changed (camera: string, changes: readonly EventChange[]): void {
    const state = this.state(camera)
    for (const { type, after } of changes) {
      if (type === 'end') {
        state.events.delete(after.id)
        continue
      }
      const open = state.events.get(after.id)
      if (open === undefined) state.events.set(after.id, { label: after.label, box: after.box, score: -1 })
      else open.box = after.box
    }
  }

  /**
   * A result of a camera here, after its events changed (changed()): it becomes the latest frame, and an event whose
   * object it shows better than its snapshot does (or that has none) gets one, if the camera's turn allows. Called
   * while the result is handled, so the frame is still held by its decode thread.
   */
  observe (result: CameraResult): void {
    const { frame } = result
    if (frame === undefined) return
    const state = this.state(result.camera)
    state.latest = { frame, boxes: result.detections.map((d) => d.box) }
    let best: { id: string, event: OpenEvent, detection: Detection } | undefined
    for (const [id, event] of state.events) {
      const detection = objectIn(event, result.detections)
      if (detection === undefined) continue
      event.box = detection.box
      if (event.score >= 0 && detection.score < event.score + BETTER_BY) continue
      // An event without a snapshot goes first; then the one that improved most.
      const rank = (e: OpenEvent, d: Detection): number => e.score < 0 ? 2 : d.score - e.score
      if (best === undefined || rank(event, detection) > rank(best.event, best.detection)) best = { id, event, detection }
    }
    if (best === undefined || !this.store.takes() || state.next !== undefined || this.now() - state.lastEventAt < EVENT_SNAPSHOT_INTERVAL_MS) return
    const { id, event, detection } = best
    const before = event.score
    event.score = detection.score
    state.lastEventAt = this.now()
    const take = async (): Promise<void> => {
      try {
        const { jpeg } = await frame.snapshot([detection.box])
        await this.store.put(id, jpeg)
      } catch (err) {
        // Tried again with a later frame (this one may be gone by its turn: the thread holds two).
        event.score = before
        this.log.debug({ camera: result.camera, event: id, err: (err as Error).message }, 'event snapshot not taken')
      }
    }
    // The slot busy (a latest.jpg, milliseconds): next in it, ahead of any latest.jpg asked meanwhile.
    if (state.busy === undefined) this.run(state, take)
    else state.next = take
  }

  /** A camera stopped here: its frames are gone, and so are its open events (they ended). */
  cameraStopped (camera: string): void {
    const state = this.cameras.get(camera)
    if (state !== undefined) state.next = undefined
    this.cameras.delete(camera)
  }

  /** An event's snapshot; a named 404 when there is none here, saying why. */
  async eventJpeg (id: string): Promise<Uint8Array> {
    const jpeg = await this.store.read(id)
    if (jpeg !== undefined) return jpeg
    const known = this.events.find(id)
    if (known.length === 0) throw new UnknownEventError(id)
    const other = known.find((e) => !e.own)
    if (!known.some((e) => e.own) && other !== undefined) throw new NoSnapshotError(`event ${id} is ${other.node}'s: its snapshot is on that box`, other.peer)
    throw new NoSnapshotError(`event ${id} has no snapshot (none was taken yet, or events.snapshotMaxBytes made room)`)
  }

  /**
   * A camera's latest frame with the latest result's boxes: the same JPEG while no newer result comes, one made at a
   * time (callers meanwhile share it), after any event snapshot being made.
   */
  async latestJpeg (camera: string): Promise<Uint8Array> {
    // A turn is waited at most twice: what the slot is making (an event snapshot, or an older latest frame), then an
    // event snapshot queued behind it; a latest frame of this result another caller made meanwhile is shared.
    for (let turn = 0; turn < 3; turn++) {
      const state = this.cameras.get(camera)
      const latest = state?.latest
      if (state === undefined || latest === undefined) throw new CameraNotHereError(`camera ${camera} does not run on this box, or has no result yet (noodle cameras says where it runs)`)
      const { seq } = latest.frame
      if (state.cached?.seq === seq) return state.cached.jpeg
      if (state.making?.seq === seq) return await state.making.jpeg
      if (state.busy !== undefined) {
        await state.busy
        continue
      }
      // Wrapped once, so every caller sharing it is told the same 503.
      const jpeg = latest.frame.snapshot(latest.boxes).then(({ jpeg }) => jpeg, (err: unknown) => {
        throw new SnapshotUnavailableError(`camera ${camera}'s latest frame could not be had: ${(err as Error).message}`, { cause: err })
      })
      state.making = { seq, jpeg }
      this.run(state, async () => {
        try {
          state.cached = { seq, jpeg: await jpeg }
        } catch {
          // The callers are told.
        } finally {
          if (state.making?.seq === seq) state.making = undefined
        }
      })
      return await jpeg
    }
    throw new SnapshotUnavailableError(`camera ${camera} is busy making snapshots: ask again`)
  }

  /** Resolves once the camera's slot is idle: the snapshots it was making, and any queued after them, made. */
  async settled (camera: string): Promise<void> {
    for (let state = this.cameras.get(camera); state?.busy !== undefined; state = this.cameras.get(camera)) {
      await state.busy.then(() => {}, () => {})
    }
  }

  private state (camera: string): CameraState {
    let state = this.cameras.get(camera)
    if (state === undefined) {
      state = { lastEventAt: -Infinity, events: new Map() }
      this.cameras.set(camera, state)
    }
    return state
  }

  /** Runs a snapshot in the camera's one slot; when it settles, the event snapshot queued (next) runs, or it is free. */
  private run (state: CameraState, work: () => Promise<void>): void {
    const busy = work().finally(() => {
      if (state.busy !== busy) return
      state.busy = undefined
      const next = state.next
      state.next = undefined
      if (next !== undefined) this.run(state, next)
    })
    state.busy = busy
  }
}

/** An event's object in a result: the detection of its label on its last box, else the one overlapping it most. */
function objectIn (event: OpenEvent, detections: readonly Detection[]): Detection | undefined {
  let best: Detection | undefined
  let bestOverlap = MATCH_IOU
  for (const d of detections) {
    if (d.label !== event.label) continue
    if (d.box === event.box) return d
    const overlap = iou(d.box, event.box)
    if (overlap >= bestOverlap) {
      best = d
      bestOverlap = overlap
    }
  }
  return best
}
