import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import onnxProto from 'onnx-proto'
import type { onnx as Onnx } from 'onnx-proto'
import t from 'tap'
import { testRuntime } from '../helpers/runtime.ts'
import { apiRequest } from '../../agent/cli/client.ts'
import { shapeFlags } from '../../agent/cli/cli.ts'
import { imageSizeOf, sampleShapes } from '../../runtime/tensors.ts'
import type { TensorSpec } from '../../runtime/tensors.ts'
import { startAgent, stopAgents, tempDir, writeSwarmKey } from '../helpers/agents.ts'
import { valueInfo, writeOnnxModel, writeVoiceActivityModel } from '../helpers/detector-models.ts'

const { DataType } = onnxProto.onnx.TensorProto
const BIN = fileURLToPath(new URL('../../bin/noodle', import.meta.url))
const VAD: TensorSpec[] = [
  { name: 'input', dtype: 'float32', shape: ['batch', 'samples'] },
  { name: 'state', dtype: 'float32', shape: [2, 'batch', 128] },
  { name: 'sr', dtype: 'int64', shape: [] }
]

t.test('sample shapes: one value per symbol across inputs, batches 1, images at the free size, the rest asked for', async (t) => {
  t.match(sampleShapes(VAD), { shapes: null, needs: /no size is known for input "input": dimension 1 \("samples"\): give one with --shape input=N,N/ })
  t.same(sampleShapes(VAD, { input: [1, 512] }), { shapes: [[1, 512], [2, 1, 128], []], needs: null }, '"batch" is 1 in both')
  t.same(sampleShapes(VAD, { input: [4, 512] }).shapes, [[4, 512], [2, 4, 128], []], 'a batch given for one input is the batch of all')
  const image: TensorSpec[] = [{ name: 'images', dtype: 'float32', shape: ['n', 3, 'h', 'w'] }, { name: 'mask', dtype: 'float32', shape: ['n', 1, 'h', 'w'] }]
  t.same(sampleShapes(image).shapes, [[1, 3, 224, 224], [1, 1, 224, 224]])
  t.same(sampleShapes(image, { mask: [1, 1, 64, 96] }).shapes, [[1, 3, 64, 96], [1, 1, 64, 96]], 'h and w from the mask size the image too')
  t.same(sampleShapes([{ name: 'x', dtype: 'float32', shape: [1, 3, 48, 192] }], { x: [7, 7, 7, 7] }).shapes, [[1, 3, 48, 192]], 'fixed sizes win')
  t.throws(() => sampleShapes(VAD, { nope: [1] }), { name: 'ShapeError', input: 'nope', message: 'the model has no input "nope" (its inputs: input, state, sr)' })
  t.throws(() => sampleShapes(VAD, { input: [512] }), { input: 'input', message: 'input "input" has 2 dimensions, not 1' })
  const rnn: TensorSpec[] = [{ name: 'x', dtype: 'float32', shape: ['seq_len', 'batch', 64] }, { name: 'mask', dtype: 'float32', shape: ['batch', 'seq_len'] }]
  t.match(sampleShapes(rnn), { needs: /input "x": dimension 0 \("seq_len"\); input "mask": dimension 1 \("seq_len"\)/ }, 'a first dimension is a batch only when it looks like one')
  t.same(sampleShapes([...rnn].reverse(), { mask: [2, 10] }).shapes?.reverse(), sampleShapes(rnn, { mask: [2, 10] }).shapes, 'whatever order the inputs come in')
  t.throws(() => sampleShapes(rnn, { x: [10, 2, 64], mask: [3, 10] }), { input: 'mask', message: /gives "batch" 3, another input 2/ }, 'one symbol, two sizes')
  t.same(sampleShapes([{ name: 'constructor', dtype: 'float32', shape: [1, 'n'] }], { constructor: [1, 5] }).shapes, [[1, 5]], 'an input named like an Object property')
  const long = sampleShapes([{ name: 'x', dtype: 'float32', shape: Array.from({ length: 16 }, (_, i) => `${'d'.repeat(1000)}${i}`) }])
  t.ok((long.needs?.length ?? Infinity) < 1_000, `a model of long names: a short message (${long.needs?.length} characters)`)
  t.throws(() => sampleShapes(VAD, { input: [1, 0] }), { message: /whole numbers from 1 to 65536/ })
})

t.test('an image input\'s free height and width: the model\'s own (Ultralytics\' imgsz), when it says something sensible', async (t) => {
  t.same(imageSizeOf({ imgsz: '[320, 256]' }), [320, 256], 'height first')
  t.same(imageSizeOf({ imgsz: '640' }), [640, 640])
  t.same(imageSizeOf({ imgsz: '[480]' }), [480, 480])
  for (const bad of ['[0, 640]', '[65537, 1]', '[99999999, 1]', '[640, 640, 3]', '640x640', '[640', '-1', '1e3', '']) t.equal(imageSizeOf({ imgsz: bad }), undefined, `not "${bad}"`)
  t.equal(imageSizeOf({ names: '{0: "person"}' }), undefined, 'none said')
  const image: TensorSpec[] = [{ name: 'images', dtype: 'float32', shape: ['n', 3, 'h', 'w'] }]
  t.same(sampleShapes(image, {}, [320, 256]).shapes, [[1, 3, 320, 256]])
  t.same(sampleShapes([{ name: 'x', dtype: 'float32', shape: [1, 'h', 'w', 3] }], {}, [320, 256]).shapes, [[1, 320, 256, 3]], 'channels last')
  t.same(sampleShapes(image, { images: [1, 3, 64, 96] }, [320, 256]).shapes, [[1, 3, 64, 96]], 'sizes given win')
})

/**
 * `y = x` reshaped to [1, 3, 320, 256], its input's height and width free, `imgsz` in its metadata: a run at any
 * other size fails, as a model traced at one size would.
 */
function writeFixedSizeModel (file: string, imgsz: string): string {
  writeOnnxModel(file, {
    name: 'fixed',
    node: [{ opType: 'Reshape', input: ['x', 'size'], output: ['y'] }],
    initializer: [{ name: 'size', dataType: DataType.INT64, dims: [4], int64Data: [1, 3, 320, 256] }],
    input: [valueInfo('x', DataType.FLOAT, [1, 3, 'height', 'width'])],
    output: [valueInfo('y', DataType.FLOAT, [1, 3, 320, 256])]
  }, { imgsz })
  return file
}

t.test('compile measures a model of free image sizes at the size its metadata says', async (t) => {
  const { dir, runtime } = testRuntime(t)
  const write = (name: string, imgsz: string) => writeFixedSizeModel(join(dir, `${name}.onnx`), imgsz)
  const said = await runtime.compile(write('said', '[320, 256]'))
  t.same({ measured: said.providers.length > 0, needs: said.needs }, { measured: true, needs: undefined }, 'measured at 320×256')
  t.equal((await runtime.bench(said.id, { runs: 5 })).runs, 5, 'and benched there')
  const unsaid = await runtime.compile(write('unsaid', '[320, 99999999]'))
  t.same(unsaid.providers, [], 'a size that makes no sense is not used: 224×224, which this model refuses')
  t.match(unsaid.needs, /a run with sample inputs at \[1×3×224×224\] failed/)
  // A file from another member may say any size: one too large to allocate is refused before it is.
  const huge = await runtime.compile(write('huge', '[65536, 65536]'))
  t.same(huge.providers, [], 'not measured')
  t.match(huge.needs, /1×3×65536×65536/)
})

t.test('inputs of other types get sample data; a model that refuses zeros is registered unmeasured, told why', async (t) => {
  const { dir, runtime } = testRuntime(t)
  const write = (name: string, graph: Omit<Onnx.IGraphProto, 'name'>) => {
    const file = join(dir, `${name}.onnx`)
    writeOnnxModel(file, { name, ...graph })
    return file
  }
  // y = x where flag, else 0: a bool input.
  const gated = await runtime.compile(write('gated', {
    node: [{ opType: 'Where', input: ['flag', 'x', 'zero'], output: ['y'] }],
    initializer: [{ name: 'zero', dataType: DataType.FLOAT, dims: [], floatData: [0] }],
    input: [valueInfo('flag', DataType.BOOL, []), valueInfo('x', DataType.FLOAT, [1, 4])],
    output: [valueInfo('y', DataType.FLOAT, [1, 4])]
  }))
  t.same({ measured: gated.providers.length > 0, needs: gated.needs }, { measured: true, needs: undefined }, 'a bool input')
  // 0, step, … up to 10: a step of 0 (the sample) is refused by onnxruntime whatever the sizes.
  const stepped = await runtime.compile(write('stepped', {
    node: [{ opType: 'Range', input: ['start', 'limit', 'step'], output: ['y'] }],
    initializer: [{ name: 'start', dataType: DataType.INT64, dims: [], int64Data: [0] }, { name: 'limit', dataType: DataType.INT64, dims: [], int64Data: [10] }],
    input: [valueInfo('step', DataType.INT64, [])],
    output: [valueInfo('y', DataType.INT64, ['n'])]
  }))
  t.same(stepped.providers, [], 'not measured')
  t.match(stepped.needs, /failed: .*\(step sampled as zeros: a model that checks their values cannot be measured with made-up inputs\)$/)
})

t.test('--shape: by name, repeatable; a bare one is the first input\'s, for a bench only', async (t) => {
  t.same(shapeFlags(['input=1,512', 'state=2x1x128'], false), { shapes: { input: [1, 512], state: [2, 1, 128] } })
  t.same(shapeFlags(['1,3,224,224'], true), { shape: [1, 3, 224, 224] })
  t.same(shapeFlags(undefined, true), {})
  t.throws(() => shapeFlags(['1,3'], false), { code: 'ERR_USAGE', message: '--shape 1,3: name the input (--shape NAME=1,3)' })
  t.throws(() => shapeFlags(['a=1', 'a=2'], false), /given twice/)
  t.throws(() => shapeFlags(['a=1,x'], false), /--shape must be a whole number/)
  t.throws(() => shapeFlags(['1,2', 'a=1'], true), /not both/)
  t.same(Object.keys(shapeFlags(['__proto__=1'], false).shapes ?? {}), ['__proto__'], 'every name is a name')
})

t.test('compile registers any model onnxruntime loads: measured at the sizes given, or said what it needs', async (t) => {
  const { dir, runtime } = testRuntime(t)
  const file = join(dir, 'vad.onnx')
  writeVoiceActivityModel(file)
  const unsized = await runtime.compile(file)
  t.same(unsized.providers, [], 'registered, not measured')
  t.match(unsized.needs, /dimension 1 \("samples"\)/)
  t.same(runtime.list().map((m) => m.id), [unsized.id], 'and listed')
  t.equal((await runtime.run(unsized.id, {
    input: { dtype: 'float32', dims: [1, 4], data: Float32Array.from([1, 2, 3, 6]) },
    state: { dtype: 'float32', dims: [2, 1, 128], data: new Float32Array(256) },
    sr: { dtype: 'int64', dims: [], data: BigInt64Array.from([16000n]) }
  })).outputs.output?.data[0], 3, 'it runs')

  const sized = await runtime.compile(file, { shapes: { input: [1, 512] } })
  t.equal(sized.needs, undefined)
  t.ok((sized.providers[0]?.p50Ms ?? 0) > 0, `measured at its real size: p50 ${sized.providers[0]?.p50Ms} ms`)
  const bench = await runtime.bench(sized.id, { runs: 20, shapes: { input: [1, 1536] } })
  t.equal(bench.runs, 20, 'a bench takes shapes by name too')
  await t.rejects(runtime.bench(sized.id, { runs: 5 }), { code: 'ERR_BAD_REQUEST', field: 'shape', message: /no size is known for input "input"/ })
  await t.rejects(runtime.bench(sized.id, { runs: 5, shapes: { state: [9] } }), { code: 'ERR_BAD_REQUEST', field: 'shapes.state' })
})

t.test('over the API and the CLI: shapes checked and named', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const agent = await startAgent({ root, name: 'compiler', swarmKeyFile })
  t.teardown(() => stopAgents([agent]))
  const file = join(root, 'vad.onnx')
  writeVoiceActivityModel(file)
  const refused = async (body: unknown) => await apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 60_000, body).then(() => 'accepted', (err: Error & { status: number }) => `${err.status} ${err.message}`)
  t.match(await refused({ file, shapes: { input: [1, 70_000] } }), /^400 shapes\.input\[1\]: /)
  t.match(await refused({ file, shapes: { input: [4096, 4096] } }), /^400 shapes\.input: must hold at most 4194304 elements/)
  t.match(await refused({ file, shapes: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`i${i}`, [1]])) }), /^400 shapes: at most 16 inputs/)
  t.match(await refused({ file, shapes: { nope: [1] } }), /^400 shapes\.nope: the model has no input "nope"/)
  t.match(await refused({ file, shapes: { input: [512] } }), /^400 shapes\.input: input "input" has 2 dimensions/)
  // A model file (a member's, or one dropped in) whose metadata says an image size too large to allocate: compiled
  // unmeasured, benched only at sizes given, and the agent goes on.
  const hostile = await apiRequest<{ id: string, providers: unknown[], needs?: string }>(agent.socketPath, 'POST', '/api/v1/models/compile', 60_000, { file: writeFixedSizeModel(join(root, 'hostile.onnx'), '[65536, 65536]') })
  t.match({ providers: hostile.providers, needs: hostile.needs }, { providers: [], needs: /1×3×65536×65536/ }, 'registered, not measured')
  const benched = await apiRequest(agent.socketPath, 'POST', '/api/v1/models/bench', 60_000, { id: hostile.id, runs: 1 }).then(() => 'ran', (err: Error & { status: number }) => `${err.status} ${err.message}`)
  t.equal(benched, '400 shape: the model\'s inputs at this shape take 51539607552 bytes; at most 16777216 are allocated', 'a bench at its said size is refused, naming shape')
  t.match(await apiRequest(agent.socketPath, 'POST', '/api/v1/models/bench', 60_000, { id: hostile.id, runs: 5, shape: [1, 3, 320, 256] }), { runs: 5 }, 'at a size given, it runs')
  const out = execFileSync(BIN, ['models', 'compile', file, '--shape', 'input=1,512', '--data-dir', agent.dataDir], { encoding: 'utf8' })
  t.match(out, /compiled [0-9a-f]{64}\n  input  input float32\[\?×\?\]\n  input  state float32\[2×\?×128\]\n  input  sr int64\[\]\n.*\n.*\n  cpu: p50 [\d.]+ ms/)
  const unsized = execFileSync(BIN, ['models', 'compile', file, '--data-dir', agent.dataDir], { encoding: 'utf8' })
  t.match(unsized, /not measured: no size is known for input "input"/)
})
