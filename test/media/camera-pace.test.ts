import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { CameraManager } from '../../media/cameras.ts'
import type { UnableReason } from '../../protocols/health.ts'
import { WorkItemSchema } from '../../protocols/work.ts'
import type { ModelRuntime } from '../../runtime/model-runtime.ts'
import { writeDetectorModel } from '../helpers/detector-models.ts'
import { testRuntime } from '../helpers/runtime.ts'

const log = createLogger('silent')

/**
 * A camera on a real source and a real model, through a runtime made slow or failing at will: what it says of
 * itself (`cannotRun`) as its box falls behind or its detector cannot run, and when it takes that back.
 */
function setup (t: Parameters<typeof testRuntime>[0] & { teardown: (fn: () => Promise<void> | void) => void }) {
  const { dir, runtime } = testRuntime(t)
  const model = join(dir, 'yolo.onnx')
  writeDetectorModel(model, { layout: 'yolov8', width: 320, height: 320 })
  const store = Store.open({ path: join(dir, 'cameras.db'), log })
  const item = WorkItemSchema.parse({ id: 'porch', kind: 'camera', source: 'lavfi:testsrc=size=320x240:rate=5', model, fps: 5, motion: { enabled: false, refreshS: 5 } })
  const said: Array<UnableReason | null> = []
  const work = Object.assign(new EventEmitter(), {
    accepts: { maxModelBytes: 1 << 30 },
    running: () => [item],
    isRemote: () => false,
    modelCompiled: () => {},
    cannotRun: (_id: string, why: UnableReason | null) => { said.push(why) }
  })
  // The real runtime, each run delayed or failed as the test says.
  const behaviour = { delayMs: 0, fail: false }
  const run: ModelRuntime['run'] = async (id, feeds) => {
    if (behaviour.fail) throw new Error('CUDA failure 999: device lost')
    await new Promise((resolve) => setTimeout(resolve, behaviour.delayMs))
    return await runtime.run(id, feeds)
  }
  const slowed = Object.create(runtime, { run: { value: run } }) as ModelRuntime
  const cameras = new CameraManager({ work, runtime: slowed, exchange: {} as never, db: store.database, log, credentials: new Map(), onResult: () => {}, pace: { checkMs: 1_000, checks: 3 } })
  cameras.start()
  t.teardown(async () => { await cameras.stop(); store.close() })
  return { cameras, said, behaviour }
}

async function until (check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!check() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 100))
}

t.test('a camera that skips most frames for a while says it is too slow here, and takes it back once it keeps up', async (t) => {
  const { cameras, said, behaviour } = setup(t)
  await until(() => (cameras.list()[0]?.fpsInferred ?? 0) > 0, 30_000)
  t.same(said, [], 'keeping up at 5 fps: nothing said')
  // Each inference now takes 600 ms: about 1.6 of the 5 frames a second reach the model.
  behaviour.delayMs = 600
  await until(() => said.length > 0, 15_000)
  t.same(said, ['too-slow'], 'after three lagging checks in a row')
  behaviour.delayMs = 0
  await until(() => said.length > 1, 15_000)
  t.same(said, ['too-slow', null], 'keeping up again: taken back')
})

t.test('a camera whose inferences keep failing says its detector cannot run here, and takes it back when one runs', async (t) => {
  const { cameras, said, behaviour } = setup(t)
  await until(() => (cameras.list()[0]?.fpsInferred ?? 0) > 0, 30_000)
  behaviour.fail = true
  await until(() => said.length > 0, 15_000)
  t.same(said, ['cannot-run'], 'ten failures in a row')
  behaviour.fail = false
  await until(() => said.length > 1, 15_000)
  t.same(said, ['cannot-run', null], 'a run that works takes it back')
})
