import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { DAY_MS } from '../../common/schema.ts'
import { Store } from '../../agent/store/store.ts'
import { CameraEventStore } from '../../media/camera-events.ts'
import type { CameraResult, ResultFrame } from '../../media/camera.ts'
import type { Detection } from '../../media/detections.ts'
import { SnapshotFailedError } from '../../media/frame-source.ts'
import { CameraSnapshots, DEFAULT_SNAPSHOT_CAP_BYTES, SnapshotStore, defaultSnapshotMaxBytes } from '../../media/snapshots.ts'
import type { EventChange } from '../../media/tracker.ts'
import type { CameraEvent } from '../../protocols/media.ts'

const log = createLogger('silent')
const id = (n: number): string => `${n.toString(36)}-0000abcd`
const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill)
const onDisk = (dir: string): string[] => readdirSync(dir).sort()
/** node:fs/promises as the store sees it (its named imports follow this object after syncBuiltinESMExports). */
const fsPromises = createRequire(import.meta.url)('node:fs/promises') as typeof import('node:fs/promises')

/** Runs `fn` with one of node:fs/promises' functions replaced, as the code under test imports it. */
async function withFs<K extends keyof typeof fsPromises> (name: K, replace: (original: typeof fsPromises[K]) => typeof fsPromises[K], fn: () => Promise<void>): Promise<void> {
  const original = fsPromises[name]
  fsPromises[name] = replace(original)
  syncBuiltinESMExports()
  try {
    await fn()
  } finally {
    fsPromises[name] = original
    syncBuiltinESMExports()
  }
}

/** A store whose events are those `kept` names. */
async function snapshotStore (t: { testdir: () => string, teardown: (fn: () => Promise<void>) => void }, maxBytes?: number, kept = (ids: readonly string[]) => new Set(ids)) {
  const dir = join(t.testdir(), 'snapshots')
  const store = new SnapshotStore({ dir, maxBytes, events: { ownIds: kept }, log })
  await store.start()
  t.teardown(() => store.stop())
  await store.indexed()
  return { dir, store }
}

t.test('snapshots stay under maxBytes: the oldest go first, a rewrite counts once and becomes the newest', async (t) => {
  const { dir, store } = await snapshotStore(t, 3_000)
  await store.put(id(1), bytes(1_000))
  await store.put(id(2), bytes(1_000))
  await store.put(id(1), bytes(1_200, 7)) // a better score, later: over the first
  t.same(store.usage(), { files: 2, bytes: 2_200, maxBytes: 3_000 })
  t.same(readFileSync(join(dir, `${id(1)}.jpg`)), Buffer.from(bytes(1_200, 7)), 'the newer snapshot, whole')
  await store.put(id(3), bytes(1_000))
  t.same(store.usage(), { files: 2, bytes: 2_200, maxBytes: 3_000 }, 'over the cap: the oldest went')
  t.same([store.has(id(1)), store.has(id(2)), store.has(id(3))], [true, false, true], 'the oldest is 2: 1 was written again after it')
  t.same(onDisk(dir), [`${id(1)}.jpg`, `${id(3)}.jpg`], 'on disk too, no temporary file left')
  await store.put(id(4), bytes(3_001))
  t.same(store.has(id(4)), false, 'one snapshot over the whole cap is not kept (and pushes none out)')
  t.equal(store.usage().files, 2)
  await t.rejects(store.put('../../etc/passwd', bytes(10)), { code: 'ERR_NOT_AN_EVENT_ID', message: /not an event id/ }, 'a file is named by an event id only')
  t.equal(await store.read('../../etc/passwd'), undefined)
})

t.test('the folder is 0700 and each snapshot 0600, whatever the folder was and whatever the umask', async (t) => {
  const dir = join(t.testdir(), 'snapshots')
  mkdirSync(dir)
  chmodSync(dir, 0o777) // an earlier run's, or an operator's: mkdir leaves it as it is
  const umask = process.umask(0o002)
  try {
    const store = new SnapshotStore({ dir, maxBytes: 1_000, events: { ownIds: (ids) => new Set(ids) }, log })
    await store.start()
    t.teardown(() => store.stop())
    await store.indexed()
    await store.put(id(1), bytes(10))
  } finally {
    process.umask(umask)
  }
  const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8)
  t.same([mode(dir), mode(join(dir, `${id(1)}.jpg`))], ['700', '600'], 'as docs/files.md says')
})

t.test('events.snapshotMaxBytes: 0 takes none; unset is 5 % of the filesystem, at most 2 GiB', async (t) => {
  const { store } = await snapshotStore(t, 0)
  await store.put(id(1), bytes(10))
  t.same([store.takes(), store.usage().files], [false, 0])
  t.equal(defaultSnapshotMaxBytes(16 * 1024 ** 3), Math.floor(16 * 1024 ** 3 * 0.05), 'a 16 GiB SD card: 819 MiB')
  t.equal(defaultSnapshotMaxBytes(1024 ** 4), DEFAULT_SNAPSHOT_CAP_BYTES, 'a 1 TiB disk: 2 GiB')
  const unset = await snapshotStore(t)
  t.ok(unset.store.usage().maxBytes > 0 && unset.store.usage().maxBytes <= DEFAULT_SNAPSHOT_CAP_BYTES, `this disk: ${unset.store.usage().maxBytes} bytes`)
})

t.test('events.retentionDays: a snapshot goes with its event', async (t) => {
  const db = Store.open({ path: join(t.testdir(), 'noodle.db'), log, retention: { camera_events: { maxAgeMs: 30 * DAY_MS } } })
  t.teardown(() => { db.close() })
  const events = new CameraEventStore({ store: db })
  const now = Date.now()
  const event = (n: number, start: number, peer = 'me'): void => {
    events.put({ id: id(n), camera: 'cam', label: 'car', score: 0.9, box: [0, 0, 10, 10], zones: [], start, end: start + 1_000 }, 'me', peer, start)
  }
  event(1, now - 31 * DAY_MS)
  event(2, now - DAY_MS)
  event(3, now - DAY_MS, 'another') // another member's event of the same id as none of ours
  const { dir, store } = await snapshotStore(t, 1_000_000, (ids) => events.idsOf('me', ids))
  await store.put(id(1), bytes(100))
  await store.put(id(2), bytes(100))
  await store.put(id(3), bytes(100)) // as if ours: only the store says whose
  await store.sweep()
  t.same([store.has(id(1)), store.has(id(2)), store.has(id(3))], [true, true, false], 'kept while its event is; an id that is not our event\'s goes')
  t.equal((await db.prune(now)).camera_events, 1, 'the store drops the 31-day-old event')
  await store.sweep()
  t.same([store.has(id(1)), store.has(id(2))], [false, true], 'and its snapshot goes at the next sweep')
  t.same(onDisk(dir), [`${id(2)}.jpg`])

  // Who an event is, by id (the API's 404 says whose): found through its start, which begins its id.
  const start = now - DAY_MS
  const real = `${start.toString(36)}-0000abcd`
  const put = (peer: string, node: string): void => { events.put({ id: real, camera: 'cam', label: 'car', score: 0.9, box: [0, 0, 10, 10], zones: [], start, end: null }, node, peer, start) }
  put('me', 'me')
  put('another', 'other-box')
  t.same(events.byId(real).sort((a, b) => a.peer.localeCompare(b.peer)), [{ peer: 'another', node: 'other-box' }, { peer: 'me', node: 'me' }])
  t.same(events.byId(id(2)), [], 'an id that does not begin with its event\'s start is not looked for elsewhere')
})

t.test('a restart indexes what is there in the background: orphans and half-written files go, other files stay', async (t) => {
  const first = await snapshotStore(t, 10_000)
  await first.store.put(id(1), bytes(100))
  await first.store.put(id(2), bytes(200))
  await first.store.put(id(3), bytes(300))
  await first.store.stop()
  writeFileSync(join(first.dir, `.${id(4)}.9.tmp`), bytes(50)) // a write the agent stopped in
  writeFileSync(join(first.dir, 'notes.txt'), 'an operator\'s')
  const dir = first.dir
  const store = new SnapshotStore({ dir, maxBytes: 350, events: { ownIds: (ids) => new Set(ids.filter((i) => i !== id(2))) }, log })
  await store.start()
  t.teardown(() => store.stop())
  await store.indexed()
  // 2's event is gone; 1 and 3 are 400 bytes, over 350: the oldest, 1, goes.
  t.same([store.has(id(1)), store.has(id(2)), store.has(id(3)), store.usage().bytes], [false, false, true, 300])
  t.same(onDisk(dir), [`${id(3)}.jpg`, 'notes.txt'])
  t.same(await store.read(id(3)), Buffer.from(bytes(300)))
})

t.test('a sweep that fails (the event store threw) is logged, and the agent runs on', async (t) => {
  const lines: Array<{ level: number, msg: string, err?: { message: string } }> = []
  const logged = createLogger('warn', { write: (line: string) => { lines.push(JSON.parse(line)) } })
  let asked!: () => void
  const sweptOnce = new Promise<void>((resolve) => { asked = resolve })
  const dir = join(t.testdir(), 'snapshots')
  const store = new SnapshotStore({
    dir,
    maxBytes: 10_000,
    sweepEveryMs: 1,
    events: { ownIds: () => { asked(); throw new Error('database is locked') } },
    log: logged
  })
  await store.start()
  t.teardown(() => store.stop())
  await store.indexed() // nothing there: the store is not asked
  await store.put(id(1), bytes(10))
  const alive = setInterval(() => {}, 60_000) // the sweep's timer does not hold the process up
  await sweptOnce
  clearInterval(alive)
  await store.stop() // waits for the sweep running
  t.match(lines[0], { level: 40, msg: 'snapshots could not be swept', err: { message: 'database is locked' } })
  t.same([store.has(id(1)), onDisk(dir)], [true, [`${id(1)}.jpg`]], 'nothing deleted on a failed sweep')
})

t.test('a link in the snapshots folder is never followed: not indexed, not served, not written through', async (t) => {
  const first = await snapshotStore(t, 1_000)
  const secret = join(first.dir, '..', 'secret')
  writeFileSync(secret, 'not a snapshot')
  await first.store.put(id(1), bytes(100))
  await first.store.stop()
  // Planted while the agent was stopped: a snapshot's name, a link to another file.
  symlinkSync(secret, join(first.dir, `${id(2)}.jpg`))
  const store = new SnapshotStore({ dir: first.dir, maxBytes: 1_000, events: { ownIds: (ids) => new Set(ids) }, log })
  await store.start()
  t.teardown(() => store.stop())
  await store.indexed()
  t.same([store.has(id(1)), store.has(id(2)), store.usage().bytes], [true, false, 100], 'a link is not indexed (nor counted as a snapshot)')
  t.equal(await store.read(id(2)), undefined)

  // Replaced by a link while indexed: refused, and no longer indexed.
  rmSync(join(first.dir, `${id(1)}.jpg`))
  symlinkSync(secret, join(first.dir, `${id(1)}.jpg`))
  t.equal(await store.read(id(1)), undefined, 'a link is not read through')
  t.same([store.has(id(1)), readFileSync(secret, 'utf8')], [false, 'not a snapshot'])

  // Links planted where a write's temporary file would be: none is written through.
  for (let n = 1; n <= 9; n++) symlinkSync(secret, join(first.dir, `.${id(3)}.${n}.tmp`))
  await store.put(id(3), bytes(100, 3))
  t.same([readFileSync(secret, 'utf8'), readFileSync(join(first.dir, `${id(3)}.jpg`))], ['not a snapshot', Buffer.from(bytes(100, 3))], 'the link\'s target untouched, the snapshot written')
})

t.test('a snapshot that is not a regular file, or larger than a snapshot can be, is not served', async (t) => {
  const { dir, store } = await snapshotStore(t, 1_000)
  await store.put(id(1), bytes(100))
  writeFileSync(join(dir, `${id(1)}.jpg`), bytes(1_001)) // over what the store keeps
  t.equal(await store.read(id(1)), undefined, 'over maxBytes')
  t.equal(store.has(id(1)), false)
  await store.put(id(2), bytes(100))
  rmSync(join(dir, `${id(2)}.jpg`))
  execFileSync('mkfifo', [join(dir, `${id(2)}.jpg`)])
  t.equal(await store.read(id(2)), undefined, 'a FIFO: refused at once (no writer to wait for)')
  await store.put(id(3), bytes(100, 3))
  t.same(await store.read(id(3)), Buffer.from(bytes(100, 3)), 'a snapshot is served')
})

t.test('thousands of snapshots deleted at once (a sweep, the cap) are deleted 16 at a time', async (t) => {
  let gone = false
  const { dir, store } = await snapshotStore(t, 1_000_000, (ids) => new Set(gone ? [] : ids))
  for (let n = 1; n <= 200; n++) await store.put(id(n), bytes(10))
  let inFlight = 0
  let most = 0
  await withFs('unlink', (unlink) => async (path) => {
    most = Math.max(most, ++inFlight)
    try {
      await unlink(path)
    } finally {
      inFlight--
    }
  }, async () => {
    gone = true
    await store.sweep()
  })
  t.same([most, store.usage().files, onDisk(dir)], [16, 0, []], 'at most 16 at once, and all gone when the sweep resolves')
})

t.test('indexing that fails is logged, and what it kept meanwhile is let go', async (t) => {
  const lines: Array<{ msg: string, err?: { message: string } }> = []
  const logged = createLogger('warn', { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const dir = join(t.testdir(), 'snapshots')
  const store = new SnapshotStore({ dir, maxBytes: 100, events: { ownIds: (ids) => new Set(ids) }, log: logged })
  t.teardown(() => store.stop())
  await withFs('readdir', () => (async () => { throw Object.assign(new Error('EIO: i/o error, scandir'), { code: 'EIO' }) }) as never, async () => {
    await store.start()
    await store.indexed()
  })
  t.match(lines, [{ msg: 'snapshots could not be indexed', err: { message: 'EIO: i/o error, scandir' } }])
  for (let n = 1; n <= 5; n++) await store.put(id(n), bytes(40)) // the cap deletes 3
  t.same([store.usage().files, onDisk(dir)], [2, [`${id(4)}.jpg`, `${id(5)}.jpg`]], 'snapshots are kept and deleted as ever')
  // Only an index being built needs the removals it may have listed; a failed one must not keep collecting them.
  t.equal((store as unknown as { removedWhileIndexing?: Set<string> }).removedWhileIndexing, undefined)
})

/** A result of camera `cam` whose frame makes fake JPEGs, recording what it was asked. */
function result (seq: number, detections: Detection[], asked: Array<{ seq: number, boxes: unknown }>, fail?: 'gone', made?: Promise<void>): CameraResult {
  const frame: ResultFrame = {
    seq,
    width: 640,
    height: 480,
    snapshot: async (boxes) => {
      asked.push({ seq, boxes })
      // Made in the decode thread: later (when `made` resolves, or the next turn of the loop).
      await (made ?? new Promise((resolve) => setImmediate(resolve)))
      if (fail !== undefined) throw new SnapshotFailedError(fail, 'no longer held')
      return { jpeg: Uint8Array.from([0xff, 0xd8, seq, 0xff, 0xd9]), width: 640, height: 480, ms: 1 }
    }
  }
  return { camera: 'cam', at: seq * 200, latencyMs: 10, detections, frame }
}

const detection = (score: number, box: [number, number, number, number] = [100, 60, 180, 110], label = 'parcel'): Detection => ({ label, score, box })
const change = (type: EventChange['type'], n: number, d: Detection): EventChange => {
  const after: CameraEvent = { id: id(n), camera: 'cam', label: d.label, score: d.score, box: d.box, zones: [], start: 0, end: type === 'end' ? 1 : null }
  return { type, before: null, after }
}

async function snapshotsOf (t: { testdir: () => string, teardown: (fn: () => Promise<void>) => void }) {
  const { store } = await snapshotStore(t, 1_000_000)
  let now = 100_000
  const snapshots = new CameraSnapshots({
    store,
    events: { find: (i) => i === id(9) ? [{ node: 'other-box', peer: 'peer-of-other-box', own: false }] : i === id(8) ? [{ node: 'me', peer: 'me-peer', own: true }] : [] },
    log,
    now: () => now
  })
  /** What the camera's slot has made settles, and the store has written. */
  const settle = async (): Promise<void> => { await snapshots.settled('cam') }
  return { store, snapshots, settle, clock: { advance: (ms: number) => { now += ms } } }
}

t.test('an event is snapshotted at its best score, with its box; at most one a second per camera, one at a time', async (t) => {
  const { store, snapshots, settle, clock } = await snapshotsOf(t)
  const asked: Array<{ seq: number, boxes: unknown }> = []
  const a = detection(0.6)
  const b = detection(0.7, [300, 200, 400, 300], 'cat')
  snapshots.changed('cam', [change('new', 1, a), change('new', 2, b)])
  snapshots.observe(result(1, [a, b], asked))
  await settle()
  t.same(asked, [{ seq: 1, boxes: [[100, 60, 180, 110]] }], 'one of the two (the camera\'s turn): the event\'s own box only')
  t.same((await snapshots.eventJpeg(id(1)))[2], 1, 'stored under the event\'s id')

  const a2 = detection(0.61, [102, 60, 182, 110])
  snapshots.observe(result(2, [a2, b], asked))
  await settle()
  t.equal(asked.length, 1, 'within the second: nothing, though event 2 has none yet')
  clock.advance(1_000)
  snapshots.observe(result(3, [a2, b], asked))
  await settle()
  t.same(asked.at(-1), { seq: 3, boxes: [[300, 200, 400, 300]] }, 'a second later: the event without a snapshot first')
  t.equal(store.usage().files, 2)

  clock.advance(1_000)
  const better = detection(0.9, [104, 60, 184, 110])
  snapshots.observe(result(4, [better, b], asked))
  await settle()
  t.same(asked.at(-1), { seq: 4, boxes: [[104, 60, 184, 110]] }, 'a better score later: taken again, the box followed by overlap')
  t.same((await snapshots.eventJpeg(id(1)))[2], 4, 'over the first')

  clock.advance(1_000)
  snapshots.observe(result(5, [detection(0.91, [104, 60, 184, 110]), b], asked))
  await settle()
  t.equal(asked.length, 3, 'better by less than 0.02: not again')

  // A frame that is gone by the time it is asked for: tried again with a later frame.
  clock.advance(1_000)
  snapshots.observe(result(6, [detection(0.95, [104, 60, 184, 110])], asked, 'gone'))
  await settle()
  clock.advance(1_000)
  snapshots.observe(result(7, [detection(0.95, [104, 60, 184, 110])], asked))
  await settle()
  t.same(asked.slice(-2).map((x) => x.seq), [6, 7])
  t.same((await snapshots.eventJpeg(id(1)))[2], 7)

  // Ended events are not snapshotted again.
  snapshots.changed('cam', [change('end', 1, better)])
  clock.advance(1_000)
  snapshots.observe(result(8, [detection(0.99, [104, 60, 184, 110])], asked))
  await settle()
  t.equal(asked.length, 5)
})

t.test('latest.jpg readers never starve event snapshots: one due while a latest.jpg is made goes next', async (t) => {
  const { store, snapshots } = await snapshotsOf(t)
  const asked: Array<{ seq: number, boxes: unknown }> = []
  let release!: () => void
  const made = new Promise<void>((resolve) => { release = resolve })
  snapshots.observe(result(1, [], asked, undefined, made))
  const first = snapshots.latestJpeg('cam') // the camera's slot busy with it until `made`
  const parcel = detection(0.6)
  const cat = detection(0.5, [1, 2, 3, 4], 'cat')
  snapshots.changed('cam', [change('new', 1, parcel)])
  snapshots.observe(result(2, [parcel, cat], asked)) // the event's snapshot is due meanwhile
  const second = snapshots.latestJpeg('cam') // asked after it: made after it
  release()
  t.same([(await first)[2], (await second)[2]], [1, 2])
  await snapshots.settled('cam')
  t.same(asked, [
    { seq: 1, boxes: [] },
    { seq: 2, boxes: [[100, 60, 180, 110]] },
    { seq: 2, boxes: [[100, 60, 180, 110], [1, 2, 3, 4]] }
  ], 'latest.jpg of 1, then the event\'s snapshot, then latest.jpg of 2')
  t.equal(store.has(id(1)), true, 'the event has its snapshot')
})

t.test('latest.jpg: one snapshot per result whoever asks, shared while it is made; named errors', async (t) => {
  const { snapshots, settle } = await snapshotsOf(t)
  const asked: Array<{ seq: number, boxes: unknown }> = []
  const code = async (p: Promise<unknown>): Promise<string> => await p.then(() => 'ok', (err: { code: string, message: string }) => `${err.code}: ${err.message}`)
  t.equal(await code(snapshots.latestJpeg('cam')), 'ERR_CAMERA_NOT_HERE: camera cam does not run on this box, or has no result yet (noodle cameras says where it runs)')
  snapshots.observe(result(1, [detection(0.6), detection(0.5, [1, 2, 3, 4], 'cat')], asked))
  const three = await Promise.all([snapshots.latestJpeg('cam'), snapshots.latestJpeg('cam'), snapshots.latestJpeg('cam')])
  t.same(three.map((j) => j[2]), [1, 1, 1])
  t.same(asked, [{ seq: 1, boxes: [[100, 60, 180, 110], [1, 2, 3, 4]] }], 'made once, with every box of the result')
  t.same((await snapshots.latestJpeg('cam'))[2], 1)
  t.equal(asked.length, 1, 'served again while no newer result came')
  snapshots.observe(result(2, [], asked))
  t.same((await snapshots.latestJpeg('cam'))[2], 2, 'a newer result: a newer frame')
  snapshots.observe(result(3, [], asked, 'gone'))
  t.match(await code(snapshots.latestJpeg('cam')), /^ERR_SNAPSHOT_UNAVAILABLE: camera cam's latest frame could not be had: no longer held$/)
  // Callers sharing a frame that fails are all told so, as a 503 to ask again in a second (not a bare 500).
  snapshots.observe(result(4, [], asked, 'gone'))
  const shared = await Promise.all([1, 2, 3].map(async () => await snapshots.latestJpeg('cam').then(() => 'made', (err: { code: string, httpStatus?: number, retryAfterS?: number }) => `${err.code} ${err.httpStatus} ${err.retryAfterS}`)))
  t.same(shared, Array(3).fill('ERR_SNAPSHOT_UNAVAILABLE 503 1'), 'every sharer of a failed latest.jpg')
  t.equal(asked.filter((a) => a.seq === 4).length, 1, 'asked of the camera once')
  await settle()
  snapshots.cameraStopped('cam')
  t.match(await code(snapshots.latestJpeg('cam')), /^ERR_CAMERA_NOT_HERE/, 'a camera stopped here has no latest frame here')

  t.equal(await code(snapshots.eventJpeg(id(7))), `ERR_UNKNOWN_EVENT: no event ${id(7)} is known here (see noodle events)`)
  t.equal(await code(snapshots.eventJpeg(id(9))), `ERR_NO_SNAPSHOT: event ${id(9)} is other-box's: its snapshot is on that box`)
  t.equal(await code(snapshots.eventJpeg(id(8))), `ERR_NO_SNAPSHOT: event ${id(8)} has no snapshot (none was taken yet, or events.snapshotMaxBytes made room)`)
  t.equal(existsSync(join(t.testdir(), 'snapshots', `${id(9)}.jpg`)), false)
})
