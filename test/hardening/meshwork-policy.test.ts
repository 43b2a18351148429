import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../agent/config/config.ts'
import { ConfigError } from '../../common/errors.ts'
import { place } from '../../agent/coordination/placement.ts'
import type { NodeCapacity } from '../../agent/coordination/placement.ts'
import { lavfiGraphProblem, remoteWorkRefusal, sourceRefusal } from '../../protocols/remote-work-policy.ts'
import { canonicalHost, isLocalHost, portOf } from '../../protocols/hosts.ts'
import { redactCredentials } from '../../common/text.ts'
import { WorkRegistry } from '../../agent/coordination/work.ts'
import { checkOwnCameras, credentialRefusal, readCameraCredentials, withCredentials } from '../../media/camera-credentials.ts'
import { BoundedMap } from '../../common/bounded-map.ts'
import type { Decision } from '../../protocols/decisions.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import type { HealthBeacon } from '../../protocols/health.ts'
import { DEFAULT_ACCEPTS, DEFAULT_REMOTE_SOURCES, WorkItemSchema } from '../../protocols/work.ts'
import type { WorkItemInput } from '../../protocols/work.ts'
import { tempDir } from '../helpers/agents.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const item = (input: WorkItemInput) => WorkItemSchema.parse(input)
const MODEL = 'a'.repeat(64)

t.test('lavfi graphs: generators that read nothing pass; anything that could open a file is refused', async (t) => {
  for (const graph of ['testsrc', 'testsrc=size=640x480:rate=10', 'testsrc2=s=320x240', 'color=c=red:s=320x240:r=30000/1001',
    'smptebars', 'mandelbrot', 'sine=frequency=440', 'anullsrc', 'life=s=64x64:mold=10', 'cellauto=rule=110', 'testsrc@cam=rate=5']) {
    t.equal(lavfiGraphProblem(graph), null, graph)
  }
  const refused: Array<[string, RegExp]> = [
    ['', /empty/],
    ['movie=/etc/passwd', /"movie" is not a generator/],
    ['amovie=/etc/passwd', /"amovie" is not a generator/],
    ['testsrc,movie=/etc/passwd', /"movie"/],
    ['testsrc;movie=x', /"movie"/],
    ['testsrc[out0];movie=x', /not a plain generator/],
    ["movie='/etc/passwd'", /not a plain generator/],
    ['testsrc=\\,movie', /not a plain generator/],
    ['mo\\vie=/etc/passwd', /not a plain generator/],
    ['sws_flags=bicubic;testsrc', /"sws_flags"/],
    ['testsrc=size=640x480 ', /not a plain generator/],
    ['life=/etc/passwd', /may read a file/],
    ['life=f=/etc/passwd', /may read a file/],
    ['cellauto=filename=/etc/passwd', /may read a file/],
    ['MOVIE=x', /not a plain generator/]
  ]
  for (const [graph, why] of refused) t.match(lavfiGraphProblem(graph), why, JSON.stringify(graph))
})

t.test('sources: by scheme or scheme and host; never files, devices or credentials', async (t) => {
  const sources = DEFAULT_REMOTE_SOURCES
  t.equal(sourceRefusal('rtsp://192.0.2.10/door', sources), null)
  t.equal(sourceRefusal('https://cam.lan/stream.mjpg', sources), null)
  t.equal(sourceRefusal('lavfi:testsrc=size=320x240:rate=10', sources), null)
  t.match(sourceRefusal('lavfi:movie=/etc/passwd', sources), /"movie" is not a generator/)
  t.match(sourceRefusal('/etc/passwd', sources), /is not a URL/)
  t.match(sourceRefusal('/dev/video0', sources), /is not a URL/)
  t.match(sourceRefusal('file:///etc/passwd', sources), /file:\/\/ is not among/)
  t.match(sourceRefusal('rtsp://admin:secret@192.0.2.10/door', sources), /carries credentials/)
  t.match(sourceRefusal('lavfi:testsrc', ['rtsp://']), /lavfi sources are not accepted/)
  const pinnedHosts = ['rtsp://cam.lan', 'http://192.0.2.20:8080']
  t.equal(sourceRefusal('rtsp://CAM.lan:554/x', pinnedHosts), null, 'a host entry without a port takes any port')
  t.equal(sourceRefusal('http://192.0.2.20:8080/x', pinnedHosts), null)
  t.match(sourceRefusal('http://192.0.2.20/x', pinnedHosts), /is not among/, 'a port in the entry must match')
  t.match(sourceRefusal('rtsp://169.254.169.254/x', pinnedHosts), /rtsp:\/\/169\.254\.169\.254 is this box or its link/)
})

t.test('sources: only plain URLs, so the host checked is the host FFmpeg connects to', async (t) => {
  const hosts = ['http://127.0.0.2', 'http://', 'rtsp://']
  // WHATWG reads host 127.0.0.2 (a backslash is a slash to it); FFmpeg reads "127.0.0.2:18081\" as user info and
  // connects to 127.0.0.1:18082 (found by an attacker, with an HTTP server's log).
  for (const evil of ['http://127.0.0.2:18081\\@127.0.0.1:18082/x', 'http://cam.lan\\@10.0.0.1/x', 'rtsp://cam.lan/x#@evil', 'rtsp://cam.lan/a b', 'rtsp://cam.lan/\u0000', 'rtsp://cam.lan/\n']) {
    t.match(sourceRefusal(evil, hosts), /is not a plain URL/, JSON.stringify(evil))
  }
  for (const good of ['rtsp://192.0.2.10:554/Streaming/Channels/101', 'http://cam.lan/video.mjpg?resolution=640x480&fps=5', 'rtsp://[2001:db8::7]:322/live', 'http://cam.lan/a%20b']) {
    t.equal(sourceRefusal(good, hosts), null, good)
  }
})

t.test('sources: a scheme alone never admits the box itself or its link, in any spelling; an exact host entry does', async (t) => {
  const local = ['http://127.0.0.1/', 'http://localhost:8080/', 'rtsp://LOCALHOST./x', 'rtsp://cam.localhost/x', 'http://[::1]/',
    'rtsp://[::ffff:127.0.0.1]/x', 'rtsp://2130706433/x', 'rtsp://0x7f.1/x', 'rtsp://127.1/x', 'rtsp://0177.0.0.1/x', 'rtsp://127.0.0.%31/x',
    'http://0.0.0.0/', 'rtsp://0/x', 'http://169.254.169.254/latest/meta-data/', 'http://[fe80::1]/', 'rtsp://[::]/x']
  for (const source of local) t.match(sourceRefusal(source, DEFAULT_REMOTE_SOURCES), /is this box or its link/, source)
  for (const source of ['rtsp://10.0.0.1/x', 'rtsp://192.168.1.20/x', 'http://[2001:db8::1]/', 'rtsp://cam.lan/x', 'rtsp://cafe.face/x']) {
    t.equal(sourceRefusal(source, DEFAULT_REMOTE_SOURCES), null, source)
  }
  t.equal(sourceRefusal('rtsp://127.0.0.1:8554/x', ['rtsp://127.0.0.1']), null, 'named by its operator')
  t.equal(sourceRefusal('rtsp://2130706433:8554/x', ['rtsp://127.0.0.1:8554']), null, 'a host is compared as a resolver reads it')
  t.match(sourceRefusal('http://127.0.0.1/x', ['rtsp://127.0.0.1']), /is this box or its link/, 'for that scheme only')
  t.equal(canonicalHost('[::FFFF:127.0.0.1]'), '::ffff:7f00:1')
  t.equal(canonicalHost('1.2.3.4.5'), '1.2.3.4.5', 'not an address in any form: left as a name')
  t.equal(canonicalHost('cam%zz'), 'cam%zz', 'not percent-encoding: left as written')
  t.equal(isLocalHost('example.com'), false)
  t.equal(portOf(new URL('srt://192.0.2.10/x')), undefined, 'srt has no default port')
  t.match(credentialRefusal('srt://192.0.2.10/x', { host: '192.0.2.10', port: 9000, username: 'u', password: 'p' }), /not for srt:/)
})

t.test('work from another home: pinned, model paths, model size and credentials', async (t) => {
  const none = { needsCredentials: false }
  t.equal(remoteWorkRefusal(DEFAULT_ACCEPTS, item({ id: 'w', kind: 'model', model: MODEL }), none), null)
  t.match(remoteWorkRefusal(DEFAULT_ACCEPTS, item({ id: 'w', kind: 'model', pinned: true }), none), /pinned/)
  t.match(remoteWorkRefusal(DEFAULT_ACCEPTS, item({ id: 'w', kind: 'model', model: '/etc/shadow' }), none), /not named by id/)
  t.match(remoteWorkRefusal({ ...DEFAULT_ACCEPTS, maxModelBytes: 10 }, item({ id: 'w', kind: 'model', model: MODEL }), { needsCredentials: false, modelBytes: 11 }), /11 bytes, over the 10/)
  t.match(remoteWorkRefusal(DEFAULT_ACCEPTS, item({ id: 'door', kind: 'camera', source: 'rtsp://cam.lan/x' }), { needsCredentials: true }), /no credentials for camera door/)
  t.equal(remoteWorkRefusal({ ...DEFAULT_ACCEPTS, credentials: ['door'] }, item({ id: 'door', kind: 'camera', source: 'rtsp://cam.lan/x' }), { needsCredentials: true }), null)
})

t.test('placement asks every node other than the home whether it would take the work, and skips recent refusals', async (t) => {
  const box = (peerId: string, o: Partial<NodeCapacity> = {}): NodeCapacity =>
    ({ peerId, accelerators: 0, cpus: 4, cpuPct: 10, memFreeBytes: 2 ** 32, running: [], modelMs: new Map(), ...o })
  const file = item({ id: 'file', kind: 'camera', source: '/srv/video.mp4', model: MODEL, cpuPct: 0 })
  const door = item({ id: 'door', kind: 'camera', source: 'rtsp://cam.lan/x', model: MODEL, cpuPct: 0 })
  const dead = 'gone' // the home is not among the live nodes: the work must go elsewhere
  t.same(place([box('a'), box('b')], [{ item: file, home: dead }]), [{ workId: 'file', node: null, reason: 'no live node may run it' }])
  t.same(place([box('a'), box('b', { accepts: { ...DEFAULT_ACCEPTS, credentials: ['door'] } })], [{ item: door, home: dead, needsCredentials: true }])
    .map((p) => p.node), ['b'], 'only the box with the camera\'s credentials')
  t.same(place([box('a'), box('b')], [{ item: door, home: dead, refusedBy: ['a'] }]).map((p) => p.node), ['b'], 'not where it was just refused')
  t.same(place([box('a', { accepts: { ...DEFAULT_ACCEPTS, maxModelBytes: 100 } }), box('b')], [{ item: door, home: dead, modelBytes: 1000 }]).map((p) => p.node), ['b'])
  t.same(place([box(dead, { cpuPct: 99 }), box('a')], [{ item: file, home: dead }]).map((p) => p.node), [dead], 'its home always may')
})

t.test('a box re-checks decisions against its own policy; its own work is its operator\'s', async (t) => {
  const work = new WorkRegistry({ selfId: 'me', configured: [item({ id: 'mine', kind: 'camera', source: '/dev/video0' })], accepts: DEFAULT_ACCEPTS })
  const decision = (w: WorkItemInput, home = 'elsewhere'): Decision =>
    ({ v: 1, type: 'decision', id: 'd1', term: 1, target: 'me', action: 'run', work: item(w), home, reason: 'test', at: 1, seq: 0 })
  t.match(work.apply(decision({ id: 'x', kind: 'camera', source: 'lavfi:movie=/etc/passwd', model: MODEL })), { outcome: 'rejected', detail: /"movie"/ })
  t.match(work.apply(decision({ id: 'x', kind: 'camera', source: 'rtsp://cam.lan/x', model: './det.onnx' })), { outcome: 'rejected', detail: /not named by id/ })
  t.match(work.apply(decision({ id: 'x', kind: 'camera', source: 'rtsp://cam.lan/x', model: MODEL }), { needsCredentials: true }), { outcome: 'rejected', detail: /no credentials/, reason: 'refused-work' })
  t.same(work.apply(decision({ id: 'mine', kind: 'camera', source: '/dev/video0' }, 'me')).outcome, 'applied')
  t.same(work.isRemote('mine'), false)
  t.same(work.apply(decision({ id: 'y', kind: 'camera', source: 'rtsp://cam.lan/x', model: MODEL })).outcome, 'applied')
  t.same(work.isRemote('y'), true)
})

t.test('a box runs work from another home with its credentials only for the host they are for, and one home per work id', async (t) => {
  const credentials = new Map([['door', { host: '192.0.2.10', username: 'u', password: 'p' }]])
  const work = new WorkRegistry({ selfId: 'me', configured: [item({ id: 'mine', kind: 'model' })], accepts: { ...DEFAULT_ACCEPTS, credentials: ['door'] }, credentials })
  work.start()
  const decision = (w: WorkItemInput, home = 'elsewhere', action: Decision['action'] = 'run'): Decision =>
    ({ v: 1, type: 'decision', id: 'd1', term: 1, target: 'me', action, work: item(w), home, reason: 'test', at: 1, seq: 1 })
  t.same(work.apply(decision({ id: 'door', kind: 'camera', source: 'rtsp://198.51.100.1/door', model: MODEL }), { needsCredentials: true }),
    { outcome: 'rejected', detail: 'camera door: its credentials are for 192.0.2.10, not for rtsp://198.51.100.1', reason: 'credentials-host' })
  t.same(work.apply(decision({ id: 'door', kind: 'camera', source: 'rtsp://192.0.2.10/door', model: MODEL }), { needsCredentials: true }).outcome, 'applied')
  t.same(work.apply(decision({ id: 'mine', kind: 'model' }, 'rogue')),
    { outcome: 'rejected', detail: 'work mine already runs here for another home (me)', reason: 'duplicate-work' })
  t.same(work.apply(decision({ id: 'mine', kind: 'model' }, 'rogue', 'stop')), { outcome: 'applied', detail: 'was not running' })
  t.same(work.runningIds(), ['mine', 'door'])
  t.same(work.forgetHomeless((home) => home !== 'elsewhere'), ['door'], 'work whose home is gone is stopped; its own never')
  t.same(work.forgetHomeless(() => false), [])
  t.same(work.runningIds(), ['mine'])
})

t.test('a bounded map keeps its newest entries, and with refresh its most recently set', async (t) => {
  const plain = new BoundedMap<string, number>(2)
  plain.set('a', 1).set('b', 2).set('c', 3)
  t.same([...plain], [['b', 2], ['c', 3]], 'the oldest is forgotten')
  const fresh = new BoundedMap<string, number>(2, { refresh: true })
  fresh.set('a', 1).set('b', 2).set('a', 3).set('c', 4)
  t.same([...fresh], [['a', 3], ['c', 4]])
  const kept = new BoundedMap<string, number>(2)
  kept.set('a', 1).set('b', 2).set('a', 3).set('c', 4)
  t.same([...kept], [['b', 2], ['c', 4]], 'without refresh a key set again keeps its place (and is forgotten first)')
  t.equal(kept.max, 2)
})

t.test('camera credentials: read from their own file, put into the URL opened, redacted wherever shown', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'cameras.json')
  writeFileSync(file, JSON.stringify({ door: { host: '192.0.2.10', port: 554, username: 'admin', password: 'p@ss:/word' }, yard: { host: 'CAM.lan', username: 'u', password: 'p' } }))
  const credentials = readCameraCredentials(file)
  t.same([...credentials.keys()], ['door', 'yard'])
  const url = withCredentials('rtsp://192.0.2.10:554/door', credentials.get('door'))
  t.equal(url, 'rtsp://admin:p%40ss%3A%2Fword@192.0.2.10:554/door')
  t.equal(new URL(url).password, 'p%40ss%3A%2Fword')
  t.equal(withCredentials('rtsp://192.0.2.10/door', credentials.get('door')), 'rtsp://admin:p%40ss%3A%2Fword@192.0.2.10/door', 'the scheme\'s default port')
  t.equal(withCredentials('rtsp://cam.lan:8554/x', credentials.get('yard')), 'rtsp://u:p@cam.lan:8554/x', 'no port given: any port on the host')
  t.equal(withCredentials('lavfi:testsrc', credentials.get('door')), 'lavfi:testsrc')
  t.equal(withCredentials('rtsp://192.0.2.10/door', undefined), 'rtsp://192.0.2.10/door')
  t.equal(withCredentials('not a url', credentials.get('door')), 'not a url')
  t.equal(redactCredentials(`could not open ${url}: 401`), 'could not open rtsp://***@192.0.2.10:554/door: 401')
  t.same(readCameraCredentials(undefined).size, 0)

  // Only to the host and port they are for: anything else is refused, never opened with them.
  const door = credentials.get('door')
  const elsewhere: Array<[string, RegExp]> = [
    ['rtsp://evil:554/door', /its credentials are for 192\.0\.2\.10:554, not for rtsp:\/\/evil:554/],
    ['rtsp://192.0.2.10:8554/door', /not for rtsp:\/\/192\.0\.2\.10:8554/],
    ['http://192.0.2.10/door', /not for http:\/\/192\.0\.2\.10/],
    ['rtsp://192.0.2.10:554/a@evil/', /"@", "\\" or "#"/],
    ['rtsp://192.0.2.10:554#@evil/', /"@", "\\" or "#"/],
    ['file:///etc/passwd', /not for file:/]
  ]
  for (const [source, why] of elsewhere) {
    t.match(credentialRefusal(source, door), why, source)
    t.throws(() => withCredentials(source, door), { name: 'CameraCredentialsError', code: 'ERR_CAMERA_CREDENTIALS' }, source)
  }
  t.equal(credentialRefusal('rtsp://3221225994:554/door', door), null, 'the same address spelled otherwise')
  t.equal(credentialRefusal('/dev/video0', door), null, 'a device takes none')
  checkOwnCameras(credentials, [item({ id: 'door', kind: 'camera', source: 'rtsp://192.0.2.10/door' }), item({ id: 'other', kind: 'camera', source: 'rtsp://elsewhere/x' })], file)
  t.throws(() => checkOwnCameras(credentials, [item({ id: 'door', kind: 'camera', source: 'rtsp://192.0.2.99/door' })], file),
    { name: 'ConfigError', message: /^cameraCredentialsFile: \S+: door: its credentials are for 192\.0\.2\.10:554, not for rtsp:\/\/192\.0\.2\.99/ })

  const bad: Array<[unknown, RegExp]> = [
    [{ door: { host: 'h', username: 'admin' } }, /^cameraCredentialsFile: \S+: door\.password: /],
    [{ door: { username: 'admin', password: 'x' } }, /^cameraCredentialsFile: \S+: door\.host: /],
    [{ door: { host: 'a/b', username: 'admin', password: 'x' } }, /door\.host: must be the camera's host/],
    [{ door: { host: 'h', port: 70000, username: 'admin', password: 'x' } }, /door\.port/],
    [{ door: { host: 'h', username: 'admin', password: 'x', url: 'y' } }, /door/],
    [{ 'no spaces': { host: 'h', username: 'a', password: 'b' } }, /no spaces|must be 1–63/],
    [[1], /cameraCredentialsFile/]
  ]
  for (const [content, message] of bad) {
    writeFileSync(file, JSON.stringify(content))
    t.throws(() => readCameraCredentials(file), message)
  }
  writeFileSync(file, '{ nope')
  t.throws(() => readCameraCredentials(file), new ConfigError('cameraCredentialsFile', `cannot read ${file} as JSON: ` + (() => { try { JSON.parse('{ nope') } catch (e) { return (e as Error).message } })()))
  t.throws(() => readCameraCredentials(join(dir, 'missing.json')), /cameraCredentialsFile: cannot read/)
})

t.test('a config source with credentials is refused, naming the key', async (t) => {
  const result = WorkItemSchema.safeParse({ id: 'door', kind: 'camera', source: 'rtsp://admin:secret@192.0.2.10/door' })
  t.equal(result.success, false)
  t.match(result.error?.issues[0], { path: ['source'], message: /put them in cameraCredentialsFile under "door"/ })
})

t.test('a beacon carries its remoteWork policy; a bad policy entry is refused', async (t) => {
  const decoded = healthCodec.decode(healthCodec.encode(beaconMessage(sampleBeacon())))
  t.match(decoded, { ok: true, value: { record: { accepts: DEFAULT_ACCEPTS } } })
  const bad = healthCodec.decode(healthCodec.encode(beaconMessage(sampleBeacon({ accepts: { sources: ['file://'], maxModelBytes: 1, credentials: [] } }))))
  t.match(bad, { ok: false, reason: 'invalid' }, 'a policy entry that is not a scheme, a host or lavfi: is invalid')
})

t.test('remoteWork, coordinator.orphanAfterMs and cameraCredentialsFile are settings like any other', async (t) => {
  const dataDir = tempDir(t)
  const defaults = loadConfig({ env: { NOODLE_DATA_DIR: dataDir, NOODLE_NAME: 'n' } })
  t.same(defaults.remoteWork, { sources: DEFAULT_REMOTE_SOURCES, maxModelBytes: DEFAULT_ACCEPTS.maxModelBytes })
  t.equal(defaults.coordinator.orphanAfterMs, 600_000)
  const set = loadConfig({ env: { NOODLE_NAME: 'n', NOODLE_DATA_DIR: dataDir, NOODLE_REMOTE_WORK_SOURCES: 'rtsp://192.0.2.10:554,lavfi:', NOODLE_COORDINATOR_ORPHAN_AFTER_MS: '5000', NOODLE_CAMERA_CREDENTIALS_FILE: '/etc/noodle/cameras.json' } })
  t.same(set.remoteWork.sources, ['rtsp://192.0.2.10:554', 'lavfi:'])
  t.equal(set.coordinator.orphanAfterMs, 5000)
  t.equal(set.cameraCredentialsFile, '/etc/noodle/cameras.json')
  t.throws(() => loadConfig({ env: { NOODLE_NAME: 'n', NOODLE_DATA_DIR: dataDir, NOODLE_REMOTE_WORK_SOURCES: 'file://' } }),
    { name: 'ConfigError', message: /^remoteWork\.sources\[0\]: must be "lavfi:", a scheme/ })
  // A member reaped before its work is orphaned would leave that work running with nobody to stop it.
  t.throws(() => loadConfig({ env: { NOODLE_NAME: 'n', NOODLE_DATA_DIR: dataDir, NOODLE_COORDINATOR_ORPHAN_AFTER_MS: '60000', NOODLE_MEMBERSHIP_REAP_AFTER_MS: '60000' } }),
    { name: 'ConfigError', message: /^coordinator\.orphanAfterMs: is 60000, but must be less than membership\.reapAfterMs \(60000\).*\(from NOODLE_COORDINATOR_ORPHAN_AFTER_MS\)$/ })
  t.throws(() => loadConfig({ env: { NOODLE_NAME: 'n', NOODLE_DATA_DIR: dataDir, NOODLE_MEMBERSHIP_REAP_AFTER_MS: '1000' } }),
    { name: 'ConfigError', message: /^coordinator\.orphanAfterMs: is 600000, but must be less than membership\.reapAfterMs \(1000\).*\(from NOODLE_MEMBERSHIP_REAP_AFTER_MS\)$/ })
})
