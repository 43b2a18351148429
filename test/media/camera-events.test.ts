import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt from 'mqtt'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { EventView } from '../../media/camera-events.ts'
import { cameraEventCodec } from '../../protocols/media.ts'
import type { CameraEventMessage } from '../../protocols/media.ts'
import { allSee, bootstrapAddr, gossip, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { freePort, startMosquitto } from '../helpers/mosquitto.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { eventually } from '../helpers/eventually.ts'
import { rogueMember } from '../hardening/meshwork-rogue-member.ts'

const BIN = fileURLToPath(new URL('../../bin/noodle', import.meta.url))
/** The parcel of detector-camera.test.ts, there for 3 s of every 6: each time an event that starts and ends. */
const BLINKING = "lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill:enable='lt(mod(t\\,6)\\,3)'"
/** The same parcel always in view; and the same frame with nothing in it. */
const PARCEL = 'lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill'
const EMPTY = 'lavfi:color=c=black:size=320x240:rate=10'
const events = (socketPath: string, query = '') => apiGet<EventView[]>(socketPath, `/api/v1/events${query}`)

t.test('objects a camera follows become events: in the store, the API and the CLI, on MQTT, and on the other members', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const port = await freePort()
  const work = [{
    id: 'porch', kind: 'camera', source: BLINKING, model, fps: 5, pinned: true,
    detector: { labels: ['cat', 'parcel', 'dog'] },
    // The parcel stands at (140, 110): inside "step", not in "lawn".
    zones: { step: [[120, 90], [160, 90], [160, 130], [120, 130]], lawn: [[0, 200], [320, 200], [320, 240], [0, 240]] }
  }]
  const host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config: { work, mqtt: { embeddedBroker: { enabled: true, host: '127.0.0.1', port } } } })
  const viewer = await startAgent({ root, name: 'viewer', swarmKeyFile, bootstrap: [await bootstrapAddr(host)] })
  t.teardown(() => stopAgents([host, viewer]))
  await waitFor('the two to see each other', () => allSee([host, viewer], [host, viewer], 'alive'), 20_000)

  const heard: Array<{ topic: string, payload: string, retain: boolean }> = []
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 200 })
  t.teardown(() => client.endAsync(true))
  client.on('message', (topic, payload, packet) => { heard.push({ topic, payload: payload.toString(), retain: packet.retain }) })
  await waitFor('a subscription', async () => { await client.subscribeAsync('noodle/cam-host/#', { qos: 0 }); return true }, 10_000)

  // An event whose whole life MQTT saw (the first may have begun before the subscription).
  const newOnMqtt = (id: string) => heard.some((m) => m.topic === 'noodle/cam-host/events' && (JSON.parse(m.payload) as { type: string, after: { id: string } }).type === 'new' && m.payload.includes(id))
  const ended = await waitFor('an event that began and ended', async () => (await events(host.socketPath)).find((e) => e.end !== null && newOnMqtt(e.id)), 40_000)
  t.same(Object.keys(ended), ['id', 'camera', 'node', 'label', 'score', 'box', 'zones', 'start', 'end'], 'exactly these fields')
  t.match(ended, { camera: 'porch', node: 'cam-host', label: 'parcel', score: 0.9, box: [100, 60, 180, 110], zones: ['step'] })
  t.match(ended.id, /^[0-9a-z]+-[0-9a-f]{8}$/)
  const [start, end] = [Date.parse(ended.start), Date.parse(ended.end as string)]
  t.ok(end - start >= 1_500 && end - start <= 3_500, `in view for ${end - start} ms of its 3 s`)

  // The viewer lists it too, as the camera's node announced it, with its node's name.
  const seen = await waitFor('the viewer to list it, ended', async () => (await events(viewer.socketPath)).find((e) => e.id === ended.id && e.end !== null), 20_000)
  t.same(seen, ended, 'the same event on every member')

  // Filters.
  t.same((await events(host.socketPath, '?zone=step&label=parcel&camera=porch&limit=1')).map((e) => e.camera), ['porch'])
  t.same(await events(host.socketPath, '?zone=lawn'), [])
  t.same(await events(host.socketPath, '?label=cat'), [])
  t.same(await events(host.socketPath, `?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), [], 'since: none started later')
  t.ok((await events(host.socketPath, `?until=${start + 1}`)).some((e) => e.id === ended.id), 'until, in ms since the epoch')

  // The CLI.
  const cli = (...args: string[]) => execFileSync(BIN, ['events', '--data-dir', host.dataDir, ...args], { encoding: 'utf8' })
  t.same((JSON.parse(cli('--json', '--zone', 'step', '--since', '10m')) as EventView[]).some((e) => e.id === ended.id), true, 'noodle events --json, since 10 minutes ago')
  t.match(cli('--label', 'parcel', '--limit', '5'), /START\s+END\s+CAMERA\s+NODE\s+LABEL\s+SCORE\s+BOX\s+ZONES\s+ID\n.*porch\s+cam-host\s+parcel\s+0\.90\s+100,60,180,110\s+step/)

  // MQTT, Frigate's way.
  const types = heard.filter((m) => m.topic === 'noodle/cam-host/events').map((m) => JSON.parse(m.payload) as { type: string, before: unknown, after: EventView & { start: number } })
  const mine = types.filter((m) => m.after.id === ended.id)
  t.equal(mine[0]?.type, 'new', 'first "new"')
  t.equal(mine.at(-1)?.type, 'end', 'last "end"')
  t.ok(mine.slice(1, -1).every((m) => m.type === 'update'), `updates between: ${mine.map((m) => m.type).join(', ')}`)
  t.match(mine.at(-1), { before: { id: ended.id, end: null }, after: { id: ended.id, label: 'parcel', zones: ['step'], end: Date.parse(ended.end as string) } })
  const counts = heard.filter((m) => m.topic === 'noodle/cam-host/porch/parcel').map((m) => m.payload)
  t.same(counts.slice(-2), ['1', '0'], 'how many parcels are in view: 1, then 0 when it goes')
  const late = mqtt.connect(`mqtt://127.0.0.1:${port}`)
  t.teardown(() => late.endAsync(true))
  const retained = new Promise<{ payload: string, retain: boolean }>((resolve) => { late.on('message', (_, payload, packet) => { resolve({ payload: payload.toString(), retain: packet.retain }) }) })
  await late.subscribeAsync('noodle/cam-host/porch/parcel')
  t.match(await retained, { retain: true, payload: /^[01]$/ }, 'retained, for a client that subscribes later')
})

t.test('a member announces events only for cameras it runs, only so fast; the API refuses bad queries, named', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const victim = await startAgent({ root, name: 'victim', swarmKeyFile })
  t.teardown(() => stopAgents([victim]))
  const rogue = await rogueMember(swarmKeyFile, [victim], { running: ['its-cam'] })
  t.teardown(() => rogue.stop())
  await waitFor('the victim to list the rogue', async () => (await apiGet<Array<{ name: string, state: string }>>(victim.socketPath, '/api/v1/mesh/nodes')).some((n) => n.name === 'rogue' && n.state === 'alive'), 20_000)
  const event = (camera: string, i: number): CameraEventMessage => ({
    v: 1, type: 'new', event: { id: `${(1_000 + i).toString(36)}-0000abcd`, camera, label: 'x', score: 0.5, box: [0, 0, 1, 1], zones: [], start: Date.now(), end: null }
  })
  const publish = async (m: CameraEventMessage) => { await rogue.node.services.pubsub.publish(cameraEventCodec.topic, cameraEventCodec.encode(m)) }
  await waitFor('the victim to subscribe', () => rogue.node.services.pubsub.getSubscribers(cameraEventCodec.topic).some((p) => p.toString() === victim.peerId))
  await publish(event('not-its-cam', 0))
  for (let i = 1; i <= 250; i++) await publish(event('its-cam', i))
  const rejected = async (reason: string) => (await gossip(victim)).rejected[`${reason}/${cameraEventCodec.topic}`] ?? 0
  t.equal(await waitFor('the flood counted', async () => (await rejected('flood')) >= 50 && rejected('flood'), 10_000), 50, 'past 200 in 10 s: refused')
  t.equal(await rejected('not-running'), 1, 'a camera its beacon does not list: refused')
  const listed = await events(victim.socketPath, '?limit=1000')
  t.equal(listed.length, 200)
  t.ok(listed.every((e) => e.camera === 'its-cam' && e.node === 'rogue'))

  // Its own events are its own: another member cannot change them by reusing their ids.
  const other = await rogueMember(swarmKeyFile, [victim], { name: 'other', running: ['its-cam'] })
  t.teardown(() => other.stop())
  await waitFor('the victim to subscribe to the other', () => other.node.services.pubsub.getSubscribers(cameraEventCodec.topic).some((p) => p.toString() === victim.peerId))
  await waitFor('the victim to list the other', async () => (await apiGet<Array<{ name: string, state: string }>>(victim.socketPath, '/api/v1/mesh/nodes')).some((n) => n.name === 'other' && n.state === 'alive'), 20_000)
  const hijack = event('its-cam', 1)
  await other.node.services.pubsub.publish(cameraEventCodec.topic, cameraEventCodec.encode({ ...hijack, type: 'end', event: { ...hijack.event, label: 'y', end: Date.now() + 1 } }))
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  const same = (await events(victim.socketPath, '?limit=1000')).filter((e) => e.id === hijack.event.id)
  t.same(same.map((e) => [e.node, e.label, e.end === null]).sort(), [['other', 'y', false], ['rogue', 'x', true]], 'the rogue\'s event unchanged; the other\'s is its own, listed under its name')

  // Queries: each parameter checked and named.
  const refused = async (query: string) => {
    try {
      await apiRequest(victim.socketPath, 'GET', `/api/v1/events${query}`)
    } catch (err) {
      const { status, code, message } = err as { status: number, code: string, message: string }
      return { status, code, message }
    }
    return 'accepted'
  }
  t.match(await refused('?limit=100000'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^limit: / })
  t.match(await refused('?limit=-1'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^limit: .*whole number/ })
  t.match(await refused('?since=yesterday'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^since: .*ISO-8601/ })
  t.match(await refused('?since=2026-13-45T99:99:99Z'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^since: / })
  t.match(await refused('?until=2026-02-30'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^until: / }, 'a day the calendar does not have')
  t.match(await refused('?camera=../etc'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^camera: / })
  t.match(await refused('?label=a&label=b'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^label: .*more than once/ })
  t.match(await refused('?order=id%3BDROP%20TABLE%20camera_events'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^order: .*not a known field/ })
  t.match(await refused('?label=%E0%A4%A'), { status: 400, code: 'ERR_BAD_TARGET' })
  t.match(await refused(`?label=${'x'.repeat(65)}`), { status: 400, code: 'ERR_BAD_REQUEST', message: /^label: / })
  t.match(await refused('?zone=x%27)%20OR%201=1--'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^zone: / })
  t.equal((await events(victim.socketPath, "?label=x' OR '1'='1".replace(/ /g, '%20'))).length, 0, 'a label is a value, never SQL')
  t.match(await refused('/../cameras'), { status: 404 })
  t.equal((await events(victim.socketPath, '?limit=1000')).length, 201, 'and the agent answers on')
  t.match(await refused('?__proto__=x'), { status: 400, code: 'ERR_BAD_REQUEST', message: /^__proto__: .*not a known field/ }, 'every key is a key')
})

t.test('a camera\'s box killed with an object in view: after a restart its event is listed, ended, and the retained count is 0', async (t) => {
  const broker = await startMosquitto()
  t.teardown(broker.close)
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const camera = (source: string) => ({ work: [{ id: 'porch', kind: 'camera', source, model, fps: 5, pinned: true, detector: { labels: ['cat', 'parcel', 'dog'] } }], mqtt: { url: broker.url } })
  const count = async (): Promise<string> => {
    // A client of its own: what the broker retains, as a client that subscribes now gets it.
    const client = await mqtt.connectAsync(broker.url)
    try {
      const got = new Promise<string>((resolve) => { client.on('message', (_, payload) => { resolve(payload.toString()) }) })
      await client.subscribeAsync('noodle/cam-host/porch/parcel')
      return await Promise.race([got, new Promise<string>((resolve) => setTimeout(() => { resolve('nothing retained') }, 1_000))])
    } finally {
      await client.endAsync(true)
    }
  }
  let host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config: camera(PARCEL) })
  t.teardown(() => stopAgents([host]))
  const open = await waitFor('the parcel\'s event', async () => (await events(host.socketPath, '?camera=porch')).find((e) => e.label === 'parcel'), 60_000)
  t.equal(open.end, null, 'in view')
  t.equal(await eventually(count, '1', { timeoutMs: 20_000 }), '1', 'its count on the broker')

  host.child.kill('SIGKILL')
  await host.exited
  t.equal(await count(), '1', 'killed: the broker still says one parcel is in view')
  // Started again where nothing is in view: the event left open ended, and the count it left is taken back.
  host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config: camera(EMPTY), dataDir: host.dataDir })
  const listed = await waitFor('the event listed, ended', async () => (await events(host.socketPath, '?camera=porch')).find((e) => e.id === open.id && e.end !== null), 10_000)
  t.match(listed, { id: open.id, label: 'parcel', box: [100, 60, 180, 110], start: open.start }, 'the event survived the restart')
  t.ok(Date.parse(listed.end as string) >= Date.parse(open.start), `ended at when it was last written (${listed.end as string})`)
  t.equal(await eventually(count, '0', { timeoutMs: 20_000 }), '0', 'the count it left taken back')
})
