import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import type { Detection } from '../../media/detections.ts'
import { ResultSharing, SHARE_INTERVAL_MS } from '../../media/result-sharing.ts'
import { CameraResultMessageSchema, MAX_SHARED_DETECTIONS } from '../../protocols/media.ts'
import type { CameraResultMessage } from '../../protocols/media.ts'

const box: Detection['box'] = [1, 2, 4, 6]
const seen = (n: number): Detection[] => Array.from({ length: n }, (_, i) => ({ label: `thing-${i}`, score: 0.5, box }))

function setup ({ meshFails = false } = {}) {
  const mesh: CameraResultMessage[] = []
  const mqtt: Array<{ topic: string, payload: unknown }> = []
  const logged: string[] = []
  const log = createLogger('silent')
  log.debug = ((_: unknown, msg: string) => { logged.push(msg) }) as typeof log.debug
  const sharing = new ResultSharing({
    toMesh: async (message) => {
      if (meshFails) throw new Error('no peers subscribed')
      mesh.push(message)
    },
    toMqtt: (topic, payload) => { mqtt.push({ topic, payload: JSON.parse(payload) }) },
    baseTopic: 'site',
    node: 'box-1',
    log
  })
  return { sharing, mesh, mqtt, logged }
}

t.test('a camera\'s results go out at most once a second while what it sees stays the same', async (t) => {
  const { sharing, mesh } = setup()
  const at = 1_000_000
  const shared = [0, 200, SHARE_INTERVAL_MS - 1, SHARE_INTERVAL_MS, SHARE_INTERVAL_MS + 500, 2 * SHARE_INTERVAL_MS]
    .map((dt) => sharing.share({ camera: 'yard', at: at + dt, latencyMs: 12, detections: seen(2) }))
  t.same(shared, [true, false, false, true, false, true])
  t.same(mesh.map((m) => m.at - at), [0, SHARE_INTERVAL_MS, 2 * SHARE_INTERVAL_MS], 'timed by the results, not the wall clock')
})

t.test('a change in what a camera sees goes out at once; cameras are throttled apart', async (t) => {
  const { sharing, mesh } = setup()
  t.same([
    sharing.share({ camera: 'yard', at: 10, latencyMs: 1, detections: seen(1) }),
    sharing.share({ camera: 'yard', at: 20, latencyMs: 1, detections: seen(2) }),
    sharing.share({ camera: 'yard', at: 30, latencyMs: 1, detections: seen(0) }),
    sharing.share({ camera: 'yard', at: 40, latencyMs: 1, detections: seen(0) }),
    sharing.share({ camera: 'gate', at: 40, latencyMs: 1, detections: seen(0) })
  ], [true, true, true, false, true])
  t.same(mesh.map((m) => [m.camera, m.detections.length]), [['yard', 1], ['yard', 2], ['yard', 0], ['gate', 0]])
})

t.test('mesh and MQTT get the same message, capped at the wire\'s detections, on the camera\'s topic', async (t) => {
  const { sharing, mesh, mqtt } = setup()
  const many = seen(MAX_SHARED_DETECTIONS + 10)
  sharing.share({ camera: 'dock', at: 5, latencyMs: 7.5, detections: many })
  t.same(mesh, [{ v: 2, camera: 'dock', at: 5, latencyMs: 7.5, detections: many.slice(0, MAX_SHARED_DETECTIONS) }])
  t.same(mqtt, [{ topic: 'site/box-1/cameras/dock/detections', payload: mesh[0] }])
  t.equal(CameraResultMessageSchema.safeParse(mesh[0]).success, true, 'the capped message is one the mesh accepts')
  t.equal(sharing.topic('yard'), 'site/box-1/cameras/yard/detections')
})

t.test('a result the mesh could not take is logged, and still goes to MQTT', async (t) => {
  const { sharing, mqtt, logged } = setup({ meshFails: true })
  t.equal(sharing.share({ camera: 'yard', at: 1, latencyMs: 1, detections: [] }), true)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(logged, ['camera result not published'])
  t.same(mqtt.map((m) => m.topic), ['site/box-1/cameras/yard/detections'])
})
