import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import type { EventView } from '../../media/camera-events.ts'
import { freePort } from '../../scripts/mosquitto.ts'
import { allSee, bootstrapAddr, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { decodeJpeg, isRed } from '../helpers/jpeg.ts'
import { certificate, httpsJson } from './api-tls.ts'

/** A white 80×50 rectangle at (100, 60) on a black 320×240 frame: a parcel, found by the test detector. */
const DRAWN = 'lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill'

interface Answer { status: number, type: string | undefined, length: number, cache: string | undefined, body: Buffer }

/** A GET on the socket or over HTTPS (with `ca` and maybe a token), whatever its answer's type. */
function fetchBytes (where: { socketPath: string } | { port: number, ca: Buffer, token?: string }, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const done = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], length: Number(res.headers['content-length']), cache: res.headers['cache-control'], body: Buffer.concat(chunks) })
      })
    }
    const req = 'socketPath' in where
      ? httpRequest({ socketPath: where.socketPath, path }, done)
      : httpsRequest({ host: '127.0.0.1', port: where.port, path, ca: where.ca, headers: where.token === undefined ? {} : { authorization: `Bearer ${where.token}` } }, done)
    req.on('error', reject)
    req.end()
  })
}

const errorOf = (a: Answer): unknown => ({ status: a.status, ...(JSON.parse(a.body.toString()) as { error: object }).error })

/** What a snapshot shows: its size, and whether the box's edges are red and its inside is not. */
function shows (jpeg: Buffer): { width: number, height: number, left: boolean, top: boolean, inside: boolean } {
  const image = decodeJpeg(jpeg)
  return { width: image.width, height: image.height, left: isRed(image.pixel(100, 85)), top: isRed(image.pixel(140, 60)), inside: isRed(image.pixel(140, 85)) }
}

t.test('a real agent: an event\'s snapshot and a camera\'s latest frame, and what hostile requests get', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const model = join(root, 'parcels.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const { certFile, keyFile } = certificate(root)
  const port = await freePort()
  const work = [{ id: 'porch', kind: 'camera', source: DRAWN, model, fps: 5, pinned: true, detector: { labels: ['cat', 'parcel', 'dog'] }, motion: { enabled: false, refreshS: 5 } }]
  const config = { work, api: { tcp: { host: '127.0.0.1', port, certFile, keyFile } } }
  let host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config })
  const viewer = await startAgent({ root, name: 'viewer', swarmKeyFile, bootstrap: [await bootstrapAddr(host)] })
  t.teardown(() => stopAgents([host, viewer]))

  const event = await waitFor('an event of the parcel', async () => (await apiGet<EventView[]>(host.socketPath, '/api/v1/events?camera=porch')).find((e) => e.label === 'parcel'), 60_000)
  t.match(event, { camera: 'porch', node: 'cam-host', box: [100, 60, 180, 110] })
  const path = `/api/v1/events/${event.id}/snapshot.jpg`
  const snapshot = await waitFor('its snapshot', async () => { const a = await fetchBytes(host, path); return a.status === 200 && a }, 10_000)
  t.same({ type: snapshot.type, length: snapshot.length, cache: snapshot.cache }, { type: 'image/jpeg', length: snapshot.body.length, cache: 'no-store' })
  t.same(shows(snapshot.body), { width: 320, height: 240, left: true, top: true, inside: false }, 'the source frame, its box drawn where the parcel is')
  t.same(readFileSync(join(host.dataDir, 'snapshots', `${event.id}.jpg`)), snapshot.body, 'the file under the data dir, named by the event')

  const latest = await fetchBytes(host, '/api/v1/cameras/porch/latest.jpg')
  t.same({ status: latest.status, type: latest.type, length: latest.length }, { status: 200, type: 'image/jpeg', length: latest.body.length })
  t.same(shows(latest.body), { width: 320, height: 240, left: true, top: true, inside: false }, 'the latest frame with the latest boxes')

  // Over HTTPS: a token is needed, a viewer's will do.
  t.equal(await apiRequest(host.socketPath, 'POST', '/api/v1/identity/register', 10_000,
    { username: 'watcher', email: 'watcher@example.com', password: 'a long and quiet river', profile: { first_name: 'W', last_name: 'A' } }).then(() => 'ok'), 'ok')
  const ca = readFileSync(certFile)
  const login = await httpsJson(port, ca, 'POST', '/api/v1/identity/login', undefined, { username: 'watcher', password: 'a long and quiet river' })
  t.match(login.body, { role: 'viewer' })
  const remote = { port, ca, token: login.body.token as string }
  t.same(errorOf(await fetchBytes({ port, ca }, path)), { status: 401, code: 'ERR_UNAUTHENTICATED', message: 'this needs a token: Authorization: Bearer <token> (POST /api/v1/identity/login)' })
  t.same(errorOf(await fetchBytes({ port, ca, token: 'forged' }, '/api/v1/cameras/porch/latest.jpg')), { status: 401, code: 'ERR_UNAUTHENTICATED', message: 'the token is unknown or expired' })
  const viewed = await fetchBytes(remote, path)
  t.same({ status: viewed.status, body: viewed.body }, { status: 200, body: snapshot.body }, 'a viewer sees the snapshot')
  t.equal((await fetchBytes(remote, '/api/v1/cameras/porch/latest.jpg')).status, 200)

  const badId = { status: 400, code: 'ERR_BAD_REQUEST', field: 'id', message: 'id: is not an event id (as noodle events lists them)' }
  t.same(errorOf(await fetchBytes(remote, '/api/v1/events/..%2F..%2Fetc%2Fpasswd/snapshot.jpg')), badId, 'a traversal is no id')
  t.same(errorOf(await fetchBytes(remote, '/api/v1/events/..%2F..%2F..%2Fnoodle.db/snapshot.jpg')), badId)
  t.same(errorOf(await fetchBytes(remote, `/api/v1/events/${'7'.repeat(300)}-0000abcd/snapshot.jpg`)), { ...badId, message: 'id: is not an event id' }, 'an over-long id')
  t.same(errorOf(await fetchBytes(remote, '/api/v1/events/zzzzzzzz-00000000/snapshot.jpg')), { status: 404, code: 'ERR_UNKNOWN_EVENT', message: 'no event zzzzzzzz-00000000 is known here (see noodle events)' })
  t.same(errorOf(await fetchBytes(remote, '/api/v1/cameras/garage/latest.jpg')), { status: 404, code: 'ERR_CAMERA_NOT_HERE', message: 'camera garage does not run on this box, or has no result yet (noodle cameras says where it runs)' })

  // Another member lists the event: the snapshot is on the camera's box, which it asks for it, by the peer id the
  // event was announced by. The camera's latest frame is there too.
  await waitFor('the two to see each other', () => allSee([host, viewer], [host, viewer], 'alive'), 20_000)
  await waitFor('the viewer to list the event', async () => (await apiGet<EventView[]>(viewer.socketPath, '/api/v1/events')).some((e) => e.id === event.id), 20_000)
  const asked = await fetchBytes(viewer, path)
  t.same({ status: asked.status, type: asked.type, body: asked.body }, { status: 200, type: 'image/jpeg', body: snapshot.body }, 'another member\'s event: its snapshot, asked of that member')
  t.same(errorOf(await fetchBytes(viewer, '/api/v1/cameras/porch/latest.jpg')), { status: 404, code: 'ERR_CAMERA_NOT_HERE', message: 'camera porch does not run on this box, or has no result yet (noodle cameras says where it runs)' })
  // …which the viewer asks for over the mesh with ?node=: the same bytes, the camera's figures, the host's own errors.
  const fromHost = await fetchBytes(viewer, `${path}?node=${host.peerId}`)
  t.same({ status: fromHost.status, type: fromHost.type, body: fromHost.body }, { status: 200, type: 'image/jpeg', body: snapshot.body }, 'the snapshot, through the viewer')
  const latestFromHost = await fetchBytes(viewer, `/api/v1/cameras/porch/latest.jpg?node=${host.peerId}`)
  t.same({ status: latestFromHost.status, type: latestFromHost.type }, { status: 200, type: 'image/jpeg' })
  t.same(shows(latestFromHost.body), { width: 320, height: 240, left: true, top: true, inside: false }, 'the latest frame with its boxes, through the viewer')
  t.match(await apiGet<CameraListView[]>(viewer.socketPath, `/api/v1/cameras?node=${host.peerId}`), [{ camera: 'porch', node: 'cam-host', peerId: host.peerId, state: 'running', fpsIn: Number, latencyMs: Number }], 'its figures, by the peer that answered')
  t.match(await apiGet<CameraListView[]>(viewer.socketPath, '/api/v1/cameras'), [{ camera: 'porch', node: 'cam-host', peerId: host.peerId, state: 'remote' }], 'the viewer lists where it runs by peer id')
  t.same(errorOf(await fetchBytes(viewer, `/api/v1/cameras/yard/latest.jpg?node=${host.peerId}`)), { status: 404, code: 'ERR_CAMERA_NOT_HERE', message: 'cam-host: camera yard does not run on this box, or has no result yet (noodle cameras says where it runs)' })

  // Through all of it the camera ran on.
  t.match((await apiGet<CameraListView[]>(host.socketPath, '/api/v1/cameras')).find((c) => c.camera === 'porch'), { state: 'running', error: null })
  t.equal((await status(host)).name, 'cam-host')

  // A restart keeps the snapshot, and finds it again.
  await stopAgents([host])
  host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config, dataDir: host.dataDir })
  const again = await fetchBytes(host, path)
  t.same({ status: again.status, body: again.body }, { status: 200, body: snapshot.body }, 'the same snapshot after a restart')
})
