import { request } from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { cameraRoutes } from '../../../agent/api/routes/cameras.ts'
import { routeTable } from '../../../agent/api/routes/route.ts'
import { ControlApi } from '../../../agent/api/server.ts'
import { createLogger } from '../../../common/logger.ts'
import { CameraNotHereError, NoSnapshotError } from '../../../media/snapshots.ts'
import { tempDir } from '../../helpers/agents.ts'

const JPEG = Uint8Array.from([0xff, 0xd8, 1, 2, 3, 0xff, 0xd9])
const EVENT = 'mx34yq14-71abb4c4'

/** One request on the socket, the path sent as it is: status, the headers that matter here, and the body. */
function get (socketPath: string, path: string, method = 'GET'): Promise<{ status: number, headers: Record<string, string | undefined>, body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const h = res.headers
        resolve({ status: res.statusCode ?? 0, headers: { type: h['content-type'], length: h['content-length'], cache: h['cache-control'], sniff: h['x-content-type-options'] as string | undefined }, body: Buffer.concat(chunks) })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

const error = (body: Buffer): unknown => (JSON.parse(body.toString()) as { error: unknown }).error

t.test('snapshot routes: JPEG answers with their type, length and no-store; every input checked where it enters', async (t) => {
  const asked: string[] = []
  const routes = cameraRoutes({
    selfId: 'me',
    name: 'me',
    cameras: { list: () => [] },
    cameraEvents: { list: () => [] },
    membership: { list: () => [] },
    views: { ask: async () => { throw new Error('no member is asked here') } },
    snapshots: {
      eventJpeg: async (id) => {
        asked.push(`event ${id}`)
        if (id === EVENT) return JPEG
        throw new NoSnapshotError(`event ${id} has no snapshot`)
      },
      latestJpeg: async (id) => {
        asked.push(`camera ${id}`)
        if (id === 'porch') return JPEG
        throw new CameraNotHereError(`camera ${id} does not run on this box`)
      }
    }
  })
  const { handlers, queryRoutes } = routeTable(routes)
  const socketPath = join(tempDir(t), 'agent.sock')
  const api = new ControlApi({ socketPath, routes: handlers, queryRoutes, log: createLogger('silent') })
  await api.start()
  t.teardown(() => api.stop())

  const secure = { cache: 'no-store', sniff: 'nosniff' }
  const snapshot = await get(socketPath, `/api/v1/events/${EVENT}/snapshot.jpg`)
  t.same({ ...snapshot, body: [...snapshot.body] }, { status: 200, headers: { type: 'image/jpeg', length: String(JPEG.length), ...secure }, body: [...JPEG] })
  const latest = await get(socketPath, '/api/v1/cameras/porch/latest.jpg')
  t.same({ status: latest.status, headers: latest.headers, body: [...latest.body] }, { status: 200, headers: { type: 'image/jpeg', length: String(JPEG.length), ...secure }, body: [...JPEG] })
  const json = await get(socketPath, '/api/v1/events')
  t.same(json.headers, { type: 'application/json', length: '2', ...secure }, 'JSON answers carry the same headers')

  const refused = async (path: string, method = 'GET') => {
    const answer = await get(socketPath, path, method)
    return { status: answer.status, error: error(answer.body), cache: answer.headers.cache }
  }
  const badId = { code: 'ERR_BAD_REQUEST', field: 'id', message: 'id: is not an event id (as noodle events lists them)' }
  t.same(await refused('/api/v1/events/..%2F..%2Fetc%2Fpasswd/snapshot.jpg'), { status: 400, error: badId, cache: 'no-store' }, 'an encoded traversal is one segment, refused by the id\'s rule')
  t.same(await refused('/api/v1/events/../../etc/passwd/snapshot.jpg'), { status: 404, error: { code: 'ERR_NOT_FOUND', message: 'no such endpoint: /api/v1/events/../../etc/passwd/snapshot.jpg' }, cache: 'no-store' }, 'a plain one fits no route')
  t.same(await refused(`/api/v1/events/${'a'.repeat(1_500)}/snapshot.jpg`), { status: 400, error: { code: 'ERR_BAD_REQUEST', field: 'id', message: 'id: is not an event id' }, cache: 'no-store' }, 'an over-long id: refused, not repeated')
  t.same(await refused('/api/v1/events/%7Bid%7D/snapshot.jpg'), { status: 400, error: badId, cache: 'no-store' }, 'the template\'s own text is no id')
  t.same(await refused('/api/v1/events/{id}/snapshot.jpg'), { status: 400, error: badId, cache: 'no-store' })
  t.same(await refused('/api/v1/events/MX34YQ14-71ABB4C4/snapshot.jpg'), { status: 400, error: badId, cache: 'no-store' }, 'ids are lower case')
  t.same(await refused('/api/v1/events//snapshot.jpg'), { status: 404, error: { code: 'ERR_NOT_FOUND', message: 'no such endpoint: /api/v1/events//snapshot.jpg' }, cache: 'no-store' }, 'an empty segment is no id')
  t.same(await refused(`/api/v1/events/${EVENT}/snapshot.jpg?size=big`), { status: 400, error: { code: 'ERR_BAD_REQUEST', field: 'size', message: 'size: is not a known field' }, cache: 'no-store' }, 'node is its one query parameter')
  t.same(await refused(`/api/v1/events/${EVENT}/snapshot.jpg?node=../x`), { status: 400, error: { code: 'ERR_BAD_REQUEST', field: 'node', message: 'node: is not a peer id' }, cache: 'no-store' })
  t.same(await refused(`/api/v1/events/${EVENT}/snapshot.jpg`, 'POST'), { status: 405, error: { code: 'ERR_METHOD', message: `POST is not allowed on /api/v1/events/${EVENT}/snapshot.jpg` }, cache: 'no-store' })
  t.same(await refused(`/api/v1/events/${EVENT}/snapshot.png`), { status: 404, error: { code: 'ERR_NOT_FOUND', message: `no such endpoint: /api/v1/events/${EVENT}/snapshot.png` }, cache: 'no-store' })
  t.same(await refused('/api/v1/events/mx34yq14-00000000/snapshot.jpg'), { status: 404, error: { code: 'ERR_NO_SNAPSHOT', message: 'event mx34yq14-00000000 has no snapshot' }, cache: 'no-store' })
  t.same(await refused('/api/v1/cameras/..%2Fporch/latest.jpg'), { status: 400, error: { code: 'ERR_BAD_REQUEST', field: 'id', message: 'id: must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit' }, cache: 'no-store' })
  t.same(await refused('/api/v1/cameras/garage/latest.jpg'), { status: 404, error: { code: 'ERR_CAMERA_NOT_HERE', message: 'camera garage does not run on this box' }, cache: 'no-store' })
  t.same(asked, [`event ${EVENT}`, 'camera porch', 'event mx34yq14-00000000', 'camera garage'], 'nothing refused reached the snapshots')
})
