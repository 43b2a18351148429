import { join } from 'node:path'
import t from 'tap'
import { testRuntime } from '../helpers/runtime.ts'
import { createLogger } from '../../common/logger.ts'
import { CameraPipeline } from '../../media/camera.ts'
import type { CameraResult, ModelRunner } from '../../media/camera.ts'
import { planDetector } from '../../media/detector/plan.ts'
import { DetectorWireSchema } from '../../protocols/work.ts'
import { readOnnxMetadata } from '../../runtime/onnx-file.ts'
import { waitFor } from '../helpers/agents.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import type { DetectorModelOptions } from '../helpers/detector-models.ts'

const log = createLogger('silent')
/** A white 80×50 rectangle at (100, 60) on a black 320×240 frame: letterboxed into the model's square input. */
const SOURCE = 'lavfi:color=c=black:size=320x240:rate=10,drawbox=x=100:y=60:w=80:h=50:color=white:t=fill'
const DRAWN = [100, 60, 180, 110]

t.test('each detector layout, end to end: FFmpeg draws a rectangle, a real ONNX graph finds it, the box comes back in the frame\'s pixels', async (t) => {
  const { dir, runtime } = testRuntime(t)

  const cases: Array<{ options: DetectorModelOptions, detector?: unknown, variant: string, label: string, score: number }> = [
    { options: { layout: 'yolov8', width: 320, height: 320, metadata: { names: "{0: 'cat', 1: 'parcel', 2: 'dog'}" } }, variant: 'yolov8', label: 'parcel', score: 0.9 },
    { options: { layout: 'yolov5', width: 320, height: 320 }, variant: 'yolov5', label: 'bicycle', score: 0.9 },
    // uint8 NHWC at 256×256: the frame is scaled by 0.8 on its way in.
    { options: { layout: 'ssd', width: 256, height: 256, classId: 3 }, detector: { type: 'ssd' }, variant: 'ssd', label: 'car', score: 0.9 },
    { options: { layout: 'rt-detr', width: 320, height: 320 }, variant: 'rt-detr', label: 'bicycle', score: 0.9 },
    { options: { layout: 'rf-detr', width: 288, height: 288, classes: 4 }, detector: { labels: ['none', 'box', 'ball', 'cup'] }, variant: 'rf-detr', label: 'box', score: 0.982 }
  ]
  for (const c of cases) {
    await t.test(c.variant, async (t) => {
      const file = join(dir, `${c.variant}.onnx`)
      writeDetectorModel(file, c.options)
      const model = await runtime.compile(file)
      const detector = planDetector({ ...model, metadata: await readOnnxMetadata(file) }, DetectorWireSchema.parse(c.detector ?? {}), { size: 640 })
      t.equal(detector.variant, c.variant, 'auto (or the type given) picks the decoder')
      const results: CameraResult[] = []
      const pipeline = new CameraPipeline({
        options: { id: 'cam', source: SOURCE, model: model.id, detector, hwaccel: 'none', fps: 5, loop: true, paced: true },
        runner: runtime,
        log,
        onResult: (r) => results.push(r)
      })
      pipeline.start()
      t.teardown(() => pipeline.stop())
      const found = await waitFor('a result', () => results[0], 20_000)
      await pipeline.stop()
      t.equal(found.detections.length, 1, 'one object (the shifted duplicate suppressed)')
      const [d] = found.detections
      t.match(d, { label: c.label, score: c.score })
      const off = d?.box.map((v, i) => Math.abs(v - (DRAWN[i] as number))) ?? []
      t.ok(off.length === 4 && off.every((e) => e <= 3), `box [${d?.box.join(', ')}] within 3 px of the drawn [${DRAWN.join(', ')}]`)
      t.match(pipeline.stats(), { detector: c.variant, outputErrors: 0, lastError: null })
    })
  }

  await t.test('motion gating: a still scene is inferred once every refreshS (and while it moves); a moving one every frame', async (t) => {
    const file = join(dir, 'yolov8.onnx')
    const model = await runtime.compile(file)
    const detector = planDetector({ ...model, metadata: {} }, DetectorWireSchema.parse({}), { size: 640 })
    /** What 4 s of the camera gave, after 3 s to settle (the decode thread's start, the first motion's hold). */
    const run = async (source: string, motion: { enabled: boolean, refreshS: number }) => {
      const results: CameraResult[] = []
      const pipeline = new CameraPipeline({
        options: { id: 'cam', source, model: model.id, detector, hwaccel: 'none', fps: 10, loop: true, paced: true, motion },
        runner: runtime,
        log,
        onResult: (r) => results.push(r)
      })
      pipeline.start()
      t.teardown(() => pipeline.stop())
      await waitFor('a first result', () => results.length > 0, 20_000)
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      const before = { results: results.length, ...pipeline.stats() }
      await new Promise((resolve) => setTimeout(resolve, 4_000))
      const after = pipeline.stats()
      await pipeline.stop()
      return { results: results.length - before.results, motionFrames: after.motionFrames - before.motionFrames, stillFrames: after.stillFrames - before.stillFrames }
    }
    const still = await run(SOURCE, { enabled: true, refreshS: 1 })
    t.ok(still.results >= 3 && still.results <= 5, `still: ${still.results} results in 4 s (one a second)`)
    t.ok(still.stillFrames >= 30, `still: ${still.stillFrames} frames held back`)
    t.equal(still.motionFrames, 0, 'still: nothing moved')
    const off = await run(SOURCE, { enabled: false, refreshS: 1 })
    t.ok(off.results >= 34, `gating off: ${off.results} results in 4 s`)
    t.same([off.motionFrames, off.stillFrames], [0, 0])
    // The test pattern's colour bars, panned 8 px a frame.
    const moving = await run("lavfi:testsrc=size=640x240:rate=10,crop=320:240:'mod(t*80\\,320)':0", { enabled: true, refreshS: 5 })
    t.ok(moving.results >= 34, `moving: ${moving.results} results in 4 s`)
    t.ok(moving.motionFrames >= 34, `moving: ${moving.motionFrames} frames moved`)
  })

  await t.test('a model whose outputs are not what it declared: counted, said once, and the camera goes on', async (t) => {
    const file = join(dir, 'yolov8.onnx')
    const model = await runtime.compile(file)
    const detector = planDetector({ ...model, metadata: {} }, DetectorWireSchema.parse({}), { size: 640 })
    const warnings: string[] = []
    const watched = createLogger('warn', { write: (line: string) => { const { msg, err } = JSON.parse(line); warnings.push(`${msg}: ${err}`) } })
    let calls = 0
    // Run 1 fails; runs 2 to 4 give an output of another shape; from run 5 the model's own.
    const runner: ModelRunner = {
      run: async (id, feeds) => {
        calls++
        if (calls === 1) throw new Error('the worker died')
        const result = await runtime.run(id, feeds)
        if (calls > 4) return result
        return { ...result, outputs: { output0: { dtype: 'float32', dims: [1, 8], data: new Float32Array(8) } } }
      }
    }
    const results: CameraResult[] = []
    const pipeline = new CameraPipeline({
      options: { id: 'cam', source: SOURCE, model: model.id, detector, hwaccel: 'none', fps: 10, loop: true, paced: true },
      runner,
      log: watched,
      onResult: (r) => results.push(r)
    })
    pipeline.start()
    t.teardown(() => pipeline.stop())
    t.equal(await waitFor('a good result after the bad ones', () => results[0]?.detections.length, 20_000), 1)
    await pipeline.stop()
    t.match(pipeline.stats(), { outputErrors: 3, lastError: null }, 'three results unread, and the error clears with a good one')
    t.same(warnings, [
      'inference failed: the worker died',
      'the model\'s outputs could not be read: output "output0" has shape [1, 8], not 3 dimensions'
    ], 'each kind of fault logged once')
  })
})
