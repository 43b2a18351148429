import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { BadRequestError, BusyError, ModelError, UnknownModelError, WorkerError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { percentile } from '../common/stats.ts'
import { isTemporary, moveDurably, temporaryPath, writeFileDurably } from './files.ts'
import { defaultOpset, readOnnxHeader, readOnnxMetadata } from './onnx-file.ts'
import type { OnnxHeader } from './onnx-file.ts'
import type { InferencePool } from './pool.ts'
import type { ModelOrigin, ModelRecord, ModelRegistry, ProviderBenchmark } from './registry.ts'
import { MAX_BENCH_WORK, MAX_SAMPLE_BYTES } from '../protocols/models.ts'
import { imageSizeOf, sampleBytes, sampleShapes, sampleTensor, ShapeError, zeroSampled } from './tensors.ts'
import type { Feeds, TensorSpec } from './tensors.ts'

/** What `noodle models compile --json` prints. */
export interface CompileResult {
  id: string
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  providers: Array<{ name: string, p50Ms: number, p99Ms: number }>
  /** Why it was registered unmeasured (sizes its inputs need, a run that failed): `models bench --shape` measures it. */
  needs?: string
}

/** Inputs by name, each at these sizes (free dimensions only: a model's fixed sizes win). */
export type InputShapes = Readonly<Record<string, readonly number[]>>

/** What `noodle models bench --json` prints. */
export interface BenchResult {
  id: string
  provider: string
  runs: number
  p50Ms: number
  p99Ms: number
  perSecond: number
}

/**
 * Execution providers tried for each model, in order of preference. Each is tried once: one that fails to load
 * (its libraries are not installed, no GPU adapter) is not tried again until the agent restarts. CPU always works.
 */
export const CANDIDATE_PROVIDERS = ['tensorrt', 'cuda', 'webgpu', 'cpu'] as const
/**
 * A model gets all the cores (but one) only where that cuts its latency by this much: threads beyond the share
 * contend with the other workers' runs when several cameras infer at once.
 */
const MORE_THREADS_GAIN = 0.85
/** Runs per provider when a model is compiled, after WARMUP_RUNS unmeasured ones. */
const COMPILE_RUNS = 20
const WARMUP_RUNS = 3
/**
 * Runs of a model that fail in a row on an accelerator before the box steps down from it: one failure may be the
 * frame's, three are the device's.
 */
export const STEP_DOWN_AFTER = 3

/**
 * The model half of the runtime: compile (verify → optimize → benchmark per provider → register) and run
 * registered models in the inference pool. Models are content-addressed: the id is the sha256 of the file.
 */
export class ModelRuntime {
  private readonly registry: ModelRegistry
  private readonly pool: InferencePool
  private readonly modelsDir: string
  private readonly log: Logger
  private readonly onCompiled: (model: ModelRecord) => void
  private readonly onRun: (model: string, ms: number) => void
  /** The execution providers tried, in order of preference (the simulated ones of NOODLE_FAULTS first). */
  private readonly candidates: readonly string[]
  private readonly unavailable = new Set<string>()
  private readonly working = new Set<string>(['cpu'])
  /**
   * Providers that failed at run time here (a GPU error, a device gone), with why: models stepped down from them
   * to the next fastest, and none is loaded on them again until the agent restarts. The beacon's `degraded`.
   */
  private readonly lost = new Map<string, string>()
  /**
   * Runs that failed in a row, per model, on the provider it was loaded with then (only models with a failure are
   * listed: the hot path reads its size).
   */
  private readonly failures = new Map<string, { provider: string, count: number }>()
  /** Models whose provider is being judged (a probe in flight): one judgement at a time. */
  private readonly judging = new Set<string>()
  /** Loads in flight, per model: runs that find their provider lost share one. */
  private readonly loading = new Map<string, Promise<{ provider: string, threads: number }>>()
  private readonly onDegraded: (why: string[]) => void
  /** The provider and threads each model is loaded with in the pool. */
  private readonly loaded = new Map<string, { provider: string, threads: number }>()
  /** Stored models being compiled now that work needs them (`prepare`). */
  private readonly preparing = new Map<string, Promise<CompileResult>>()
  /** A bench is running (one at a time). */
  private benching = false
  /** Each model's latency on its fastest provider, newest model first: read for every beacon, changed rarely. */
  private latencies: Array<{ id: string, p50Ms: number }> | undefined

  constructor (components: {
    registry: ModelRegistry
    pool: InferencePool
    modelsDir: string
    log: Logger
    onCompiled?: (model: ModelRecord) => void
    /** Every run of a model, with its inference time in the worker (ms): for the metrics. */
    onRun?: (model: string, ms: number) => void
    /** Execution providers to try, in order (default CANDIDATE_PROVIDERS). */
    providers?: readonly string[]
    /** A provider failed at run time and models stepped down from it: `degraded()` changed. */
    onDegraded?: (why: string[]) => void
  }) {
    this.candidates = components.providers ?? CANDIDATE_PROVIDERS
    this.onDegraded = components.onDegraded ?? (() => {})
    this.registry = components.registry
    this.pool = components.pool
    this.modelsDir = components.modelsDir
    this.log = components.log
    this.onCompiled = components.onCompiled ?? (() => {})
    this.onRun = components.onRun ?? (() => {})
  }

  start (): void {
    mkdirSync(this.modelsDir, { recursive: true, mode: 0o750 })
    // Files a crash left half-written (copies, optimized graphs, downloads): never whole, never registered.
    for (const name of readdirSync(this.modelsDir)) {
      if (isTemporary(name) || name.endsWith('.part') || name.endsWith('.fetched.onnx')) rmSync(join(this.modelsDir, name), { force: true })
    }
    for (const m of this.registry.list()) for (const p of m.providers) this.working.add(p.name)
  }

  /** The execution providers that have run a model here (for the health beacon). */
  get providers (): string[] {
    return this.candidates.filter((p) => this.working.has(p) && !this.lost.has(p))
  }

  /** Why this box runs models slower than it measured: each provider lost at run time, as `name: why` (≤ 120 characters, as the beacon carries it). */
  degraded (): string[] {
    return [...this.lost].map(([name, why]) => `${name}: ${why}`.slice(0, 120))
  }

  list (): ModelRecord[] {
    return this.registry.list()
  }

  /** Each registered model's measured latency here (p50 on its fastest provider), newest first: for the beacon. */
  modelLatencies (): Array<{ id: string, p50Ms: number }> {
    // On the fastest provider still working: a lost accelerator's figures are not what the box does now.
    this.latencies ??= this.registry.list().flatMap((m) => {
      const best = m.providers.find((p) => !this.lost.has(p.name))
      return best === undefined ? [] : [{ id: m.id, p50Ms: best.p50Ms }]
    })
    return this.latencies
  }

  /** `name` is what the model is listed as (default: the file's name); `origin` says why it is here. */
  async compile (file: string, { name = basename(file), origin = 'compiled', shapes = {} }: { name?: string, origin?: ModelOrigin, shapes?: InputShapes } = {}): Promise<CompileResult> {
    // Before anything is written: without onnxruntime (a core release) nothing can be compiled.
    this.pool.checkAvailable()
    const { bytes, header, opset, id } = readModel(file)
    const copy = this.copyIn(id, bytes)
    let optimizedFile: string | null = join(this.modelsDir, `${id}.optimized.onnx`)
    const optimizing = temporaryPath(optimizedFile)
    try {
      await this.pool.optimize(copy, optimizing)
      await moveDurably(optimizing, optimizedFile)
    } catch (err) {
      this.log.warn({ err, model: id }, 'graph optimization failed; the model runs as it was given')
      rmSync(optimizing, { force: true })
      optimizedFile = null
    }
    const runFile = optimizedFile ?? copy
    const benchmarks: ProviderBenchmark[] = []
    let specs: { inputs: TensorSpec[], outputs: TensorSpec[] } | undefined
    // Why the model is registered unmeasured, when it is: sizes nobody gave, or sample inputs it refused.
    let needs: string | undefined
    let sample: number[][] | undefined
    let firstLoaded: string | undefined
    // Sizes a caller chose are held to a bench's cap; the model's own fixed sizes to compile's larger one.
    const maxBytes = Object.keys(shapes).length > 0 ? MAX_SAMPLE_BYTES : COMPILE_SAMPLE_BYTES
    const imageSize = await imageSizeIn(copy)
    for (const provider of this.candidates) {
      if (this.unavailable.has(provider) || this.lost.has(provider)) continue
      try {
        specs = await this.pool.load(id, runFile, provider)
      } catch (err) {
        if (provider === 'cpu') throw new ModelError(`onnxruntime cannot load the model: ${(err as Error).message}`)
        this.unavailable.add(provider)
        this.log.info({ provider, reason: (err as Error).message.split('\n')[0] }, 'execution provider unavailable; not trying it again')
        continue
      }
      firstLoaded ??= provider
      if (sample === undefined) {
        let sized: ReturnType<typeof sampleShapes>
        try {
          sized = shapesFor(specs.inputs, shapes, 'shapes', imageSize)
        } catch (err) {
          // Sizes that do not fit the model: nothing of it is kept.
          await this.pool.unload(id)
          for (const f of [copy, optimizedFile]) if (f !== null) rmSync(f, { force: true })
          throw err
        }
        if (sized.needs !== null) {
          needs = sized.needs
          break
        }
        sample = sized.shapes
      }
      try {
        const ms = await this.timeRuns(id, specs.inputs, COMPILE_RUNS, sample, 1, maxBytes)
        benchmarks.push(figures(provider, this.pool.threads, ms))
        this.working.add(provider)
      } catch (err) {
        // A model can load and still refuse made-up inputs (a value it checks, sizes that do not fit each other),
        // or a provider can fail where another runs: the next is tried, and the model says why if none ran.
        needs = `a run with sample inputs at [${sample.map((s) => s.join('×')).join('; ')}] failed: ${(err as Error).message.split('\n')[0] ?? ''}; give the sizes it runs at with --shape NAME=d1,d2,…${zeroNote(specs.inputs)}`
      }
    }
    if (benchmarks.length > 0) needs = undefined
    // Ties by name, as the registry lists them: the provider chosen now is the one chosen after a restart.
    benchmarks.sort((a, b) => a.p50Ms - b.p50Ms || (a.name < b.name ? -1 : 1))
    let best = benchmarks[0]
    // Threads, measured: one inference at a time (as a camera runs it) on every core but one, against the share.
    if (best !== undefined && this.pool.maxThreads > this.pool.threads) {
      try {
        await this.pool.load(id, runFile, best.name, this.pool.maxThreads)
        const more = figures(best.name, this.pool.maxThreads, await this.timeRuns(id, (specs as { inputs: TensorSpec[] }).inputs, COMPILE_RUNS, sample as number[][], 1, maxBytes))
        if (more.p50Ms < best.p50Ms * MORE_THREADS_GAIN) benchmarks[0] = best = more
      } catch (err) {
        this.log.warn({ err, model: id }, 'measuring the model on more threads failed; it runs on its share')
      }
    }
    const chosen = best ?? { name: firstLoaded ?? 'cpu', threads: this.pool.threads }
    await this.pool.load(id, runFile, chosen.name, chosen.threads)
    this.loaded.set(id, { provider: chosen.name, threads: chosen.threads })
    if (needs !== undefined) this.log.warn({ model: id, needs }, 'model registered without a benchmark')
    const record = {
      id, name, file: copy, optimizedFile, sizeBytes: bytes.length, irVersion: header.irVersion, opset, ...specs as { inputs: TensorSpec[], outputs: TensorSpec[] },
      createdAt: Date.now(), origin, ...stamps(copy, optimizedFile)
    }
    this.registry.put(record, benchmarks)
    this.latencies = undefined
    this.log.info({ model: id, name: record.name, providers: benchmarks }, 'model compiled')
    this.onCompiled({ ...record, providers: benchmarks })
    return { ...compileResult({ ...record, providers: benchmarks }), ...(needs === undefined ? {} : { needs }) }
  }

  /**
   * Registers a model without compiling it: an ONNX file, copied here under its hash, listed and served to
   * members, but neither optimized nor measured, so no onnxruntime thread starts. A standby copy waits so for
   * work that may never come here; `prepare` (or the model's first run) compiles it when the work lands.
   */
  store (file: string, { name = basename(file), origin = 'standby' }: { name?: string, origin?: ModelOrigin } = {}): CompileResult {
    const { bytes, header, opset, id } = readModel(file)
    const existing = this.registry.get(id)
    // Already here (stored or compiled): its copy stays as registered.
    if (existing !== undefined) return compileResult(existing)
    const copy = this.copyIn(id, bytes)
    const record = {
      id, name, file: copy, optimizedFile: null, sizeBytes: bytes.length, irVersion: header.irVersion, opset, inputs: [], outputs: [],
      createdAt: Date.now(), origin, ...stamps(copy, null)
    }
    this.registry.put(record, [])
    this.log.info({ model: id, name, origin }, 'model stored; it is compiled when work needs it')
    return compileResult({ ...record, providers: [] })
  }

  /**
   * A registered model, compiled: one only stored (a standby copy whose work has come here) is compiled now,
   * once however many ask at the same time.
   */
  async prepare (idOrPrefix: string): Promise<ModelRecord> {
    const model = this.require(idOrPrefix)
    if (compiled(model)) return model
    let compiling = this.preparing.get(model.id)
    if (compiling === undefined) {
      compiling = this.intactFile(model)
        .then(async (file) => await this.compile(file, { name: model.name, origin: model.origin }))
        .finally(() => { this.preparing.delete(model.id) })
      this.preparing.set(model.id, compiling)
    }
    await compiling
    return this.require(model.id)
  }

  /** Writes a model's bytes here as `<id>.onnx`, whole or not at all; returns its path. */
  private copyIn (id: string, bytes: Buffer): string {
    const copy = join(this.modelsDir, `${id}.onnx`)
    // Written afresh: a copy left torn by a crash must not be trusted because it exists. (A stored copy compiled
    // later is read and written again: the same bytes, stamped again.)
    writeFileDurably(copy, bytes)
    return copy
  }

  /** An operator asked for a model the standby had fetched: it is no longer collected. */
  keep (id: string, origin: Exclude<ModelOrigin, 'standby'>): void {
    this.registry.keep(id, origin)
  }

  /** Unloads a model and deletes it and its files (a standby copy no work names any more). */
  async forget (id: string): Promise<void> {
    const model = this.registry.get(id)
    if (model === undefined) return
    if (this.loaded.delete(id)) await this.pool.unload(id)
    this.registry.remove(id)
    this.latencies = undefined
    for (const file of [model.file, model.optimizedFile]) if (file !== null) rmSync(file, { force: true })
  }

  /**
   * Runs a registered model `runs` times with sample inputs, every worker busy: latency and throughput. One bench
   * at a time (409 ERR_BUSY): each takes every worker and a set of inputs per worker. The inputs are judged at the
   * size they will really have (the model's fixed sizes win over the shape asked for), before any is allocated.
   */
  async bench (id: string, { runs = 100, shape, shapes = {} }: { runs?: number, shape?: number[], shapes?: InputShapes } = {}): Promise<BenchResult> {
    const model = this.require(id)
    // `shape` is the first input's (as before inputs could be named).
    const first = model.inputs[0]
    const given = shape === undefined || first === undefined ? shapes : { ...shapes, [first.name]: shape }
    // A refusal names what was asked: `shapes` when inputs were sized by name, else `shape`.
    const field = Object.keys(shapes).length > 0 ? 'shapes' : 'shape'
    const sized = shapesFor(model.inputs, given, field, await imageSizeIn(model.file))
    if (sized.needs !== null) throw new BadRequestError(sized.needs, field)
    const sample = sized.shapes
    const problem = sampleProblem(model.inputs, sample)
    if (problem !== undefined) throw new BadRequestError(problem, field)
    const elements = sample.reduce((sum, dims) => sum + dims.reduce((a, b) => a * b, 1), 0)
    if (runs * elements > MAX_BENCH_WORK) {
      throw new BadRequestError(`times the elements of the model's inputs (${elements}) must be at most ${MAX_BENCH_WORK}: fewer runs`, 'runs')
    }
    if (this.benching) throw new BusyError('a bench is running: try again when it is done')
    this.benching = true
    try {
      const { provider, threads } = await this.ensureLoaded(model)
      const started = performance.now()
      // Every worker busy, but at most MAX_SAMPLE_BYTES of inputs in flight: a large shape runs on fewer workers,
      // so what a bench holds (inputs, and the model's activations, which grow with them) does not grow with cores.
      const lanes = Math.max(1, Math.min(this.pool.size, Math.floor(MAX_SAMPLE_BYTES / Math.max(1, sampleSetBytes(model.inputs, sample)))))
      const ms = await this.timeRuns(model.id, model.inputs, runs, sample, lanes)
      const seconds = (performance.now() - started) / 1000
      const result = figures(provider, threads, ms)
      this.registry.recordBenchmark(model.id, result)
      this.latencies = undefined
      return { id: model.id, provider, runs, p50Ms: result.p50Ms, p99Ms: result.p99Ms, perSecond: round(runs / seconds) }
    } finally {
      this.benching = false
    }
  }

  /**
   * Latencies a model's work measured at the sizes it really runs at (a camera's first inferences): recorded for
   * the provider it runs on, in place of compile's figures at sample sizes. Placement and the beacon read them.
   */
  recordRuns (id: string, ms: number[]): void {
    const loaded = this.loaded.get(id)
    if (loaded === undefined || ms.length === 0) return
    const measured = figures(loaded.provider, loaded.threads, ms)
    this.registry.recordBenchmark(id, measured)
    this.latencies = undefined
    this.log.info({ model: id, provider: measured.name, p50Ms: measured.p50Ms, runs: measured.runs }, 'model latency measured at the size its work runs at')
  }

  /** Runs a registered model once on the given inputs. */
  async run (id: string, feeds: Feeds): Promise<Awaited<ReturnType<InferencePool['run']>>> {
    // The hot path (every camera frame): a model already loaded runs without a look in the registry.
    let modelId = id
    let loaded = this.loaded.get(id)
    if (loaded === undefined || this.lost.has(loaded.provider)) {
      const model = this.require(id)
      loaded = await this.ensureLoaded(model)
      modelId = model.id
    }
    let result: Awaited<ReturnType<InferencePool['run']>>
    try {
      result = await this.pool.run(modelId, feeds)
    } catch (err) {
      await this.runFailed(modelId, loaded.provider, err as Error)
      throw err
    }
    if (this.failures.size > 0) this.failures.delete(modelId)
    this.onRun(modelId, result.ms)
    return result
  }

  /**
   * A run failed on the provider the model is loaded with. After STEP_DOWN_AFTER in a row there, the provider is
   * judged: the model's sample inputs (those compile measured it with) are run on it, and if they fail too the
   * device is taken for broken (a GPU error, a device gone): it is lost for every model, this one is loaded at once
   * on the next fastest provider it measured (the CPU at last), and the caller's next run goes there. If they run,
   * the fault was the inputs' or the model's, and nothing is stepped down. The CPU, the last resort, is never lost.
   * A worker that died or was replaced (WorkerError: every run it held fails at once) says nothing of the device,
   * nor does a failure on a provider the model has left meanwhile. The run that failed is not retried: its inputs
   * went to the worker, and a camera's next frame is newer anyway.
   */
  private async runFailed (id: string, provider: string, err: Error): Promise<void> {
    if (err instanceof WorkerError || provider === 'cpu' || this.loaded.get(id)?.provider !== provider) return
    const last = this.failures.get(id)
    const count = last?.provider === provider ? last.count + 1 : 1
    this.failures.set(id, { provider, count })
    if (count < STEP_DOWN_AFTER || this.lost.has(provider) || this.judging.has(id)) return
    const model = this.registry.get(id)
    const next = model === undefined ? undefined : this.fallbackFor(model, provider)
    if (model === undefined || next === undefined) return
    this.judging.add(id)
    try {
      const probe = await this.probe(model)
      if (probe === 'ran') {
        this.failures.delete(id)
        this.log.warn({ provider, model: id, err: err.message.split('\n')[0] }, 'runs fail on this provider but the model\'s sample inputs run: not stepping down (the inputs are at fault)')
        return
      }
      this.loseProvider(provider, err, id, `${STEP_DOWN_AFTER} runs and a sample run failed; next: ${next}`)
      await this.ensureLoaded(model)
    } catch (loadErr) {
      // Its next run tries again, and fails named if no provider can run it.
      this.log.warn({ model: id, err: (loadErr as Error).message }, 'stepping a model down failed')
    } finally {
      this.judging.delete(id)
    }
  }

  /**
   * One run of the model's sample inputs where it is loaded now: 'ran', 'failed', or 'unknown' where no sample can
   * be made (free dimensions nobody sized).
   */
  private async probe (model: ModelRecord): Promise<'ran' | 'failed' | 'unknown'> {
    let sized: ReturnType<typeof sampleShapes>
    try {
      sized = sampleShapes(model.inputs, {}, await imageSizeIn(model.file))
    } catch {
      return 'unknown'
    }
    // Compile's cap: these are the sizes it ran the model at (a 1280-pixel detector's input is over a bench's).
    if (sized.needs !== null || sampleProblem(model.inputs, sized.shapes, COMPILE_SAMPLE_BYTES) !== undefined) return 'unknown'
    const feeds: Feeds = Object.fromEntries(model.inputs.map((spec, i) => [spec.name, sampleTensor({ ...spec, shape: sized.shapes[i] as number[] }, undefined)]))
    try {
      await this.pool.run(model.id, feeds)
      return 'ran'
    } catch {
      return 'failed'
    }
  }

  /** Where a model goes when `provider` fails: the fastest other provider it measured that still works, else the CPU. */
  private fallbackFor (model: ModelRecord, provider: string): string | undefined {
    const measured = model.providers.find((p) => p.name !== provider && !this.unavailable.has(p.name) && !this.lost.has(p.name))
    return measured?.name ?? 'cpu'
  }

  /**
   * The one lookup rule: a model is named by its id, or by a prefix of it that no other registered model shares
   * (as `noodle models` shows ids). `lookup` answers undefined where no model is so named; `require` throws
   * UnknownModelError (404 at the API).
   */
  lookup (idOrPrefix: string): ModelRecord | undefined {
    if (idOrPrefix.length < 64) {
      const matches = this.registry.list().filter((m) => m.id.startsWith(idOrPrefix))
      if (matches.length === 1) return matches[0]
    }
    return this.registry.get(idOrPrefix)
  }

  require (idOrPrefix: string): ModelRecord {
    const model = this.lookup(idOrPrefix)
    if (model === undefined) throw new UnknownModelError(idOrPrefix)
    return model
  }

  private async ensureLoaded (model: ModelRecord): Promise<{ provider: string, threads: number }> {
    const loaded = this.loaded.get(model.id)
    if (loaded !== undefined && !this.lost.has(loaded.provider)) return loaded
    let loading = this.loading.get(model.id)
    if (loading === undefined) {
      loading = this.load(model).finally(() => { this.loading.delete(model.id) })
      this.loading.set(model.id, loading)
    }
    return await loading
  }

  /** Loads a model on the fastest provider it measured that still works (compiling it first if it was only stored). */
  private async load (model: ModelRecord): Promise<{ provider: string, threads: number }> {
    let loaded: { provider: string, threads: number } | undefined
    if (!compiled(model)) {
      // Stored, never compiled: compiling it loads it too.
      model = await this.prepare(model.id)
      loaded = this.loaded.get(model.id)
      if (loaded !== undefined && !this.lost.has(loaded.provider)) return loaded
    }
    const file = await this.intactFile(model)
    // The fastest it measured that still works, then the next: an accelerator whose load fails is gone (a device
    // pulled out) and is lost for every model; the CPU, the last resort, fails the load named.
    const choices = model.providers.filter((p) => !this.unavailable.has(p.name) && !this.lost.has(p.name)).map((p) => ({ provider: p.name, threads: p.threads }))
    if (!choices.some((c) => c.provider === 'cpu')) choices.push({ provider: 'cpu', threads: this.pool.threads })
    for (const choice of choices) {
      try {
        await this.pool.load(model.id, file, choice.provider, choice.threads)
      } catch (err) {
        if (choice.provider === 'cpu') throw err
        this.loseProvider(choice.provider, err as Error, model.id, 'its load failed')
        continue
      }
      this.loaded.set(model.id, choice)
      return choice
    }
    throw new ModelError(`no execution provider here can load model ${model.id}`)
  }

  /** `provider` is gone (runs or a load failed on it, a sample run too): no model runs on it until the agent restarts. */
  private loseProvider (provider: string, err: Error, model: string, how: string): void {
    const why = printable(err.message.split('\n')[0] ?? '').slice(0, 100) || 'runs fail'
    this.lost.set(provider, why)
    this.failures.delete(model)
    this.latencies = undefined
    this.log.error({ provider, why, model, how }, 'execution provider failed at run time: stepping down')
    this.onDegraded(this.degraded())
  }

  /**
   * The file to load for a registered model, once it is known whole: the optimized graph while its size and
   * modification time are what was registered, else the copy, whose size and time (or, for a model registered
   * before those were kept, its hash) must match. A torn or altered copy is refused: compile or fetch it again.
   */
  private async intactFile (model: ModelRecord): Promise<string> {
    const copy = statOf(model.file)
    let intact = copy?.size === model.sizeBytes && copy.mtimeMs === model.fileMtimeMs
    if (!intact && copy?.size === model.sizeBytes && model.fileMtimeMs === null) {
      intact = await sha256Of(model.file) === model.id
      if (intact) {
        // The optimized graph has no hash to check: it is stamped only if it reads to its end as an ONNX model.
        const stamped = stamps(model.file, model.optimizedFile !== null && wholeOnnx(model.optimizedFile) ? model.optimizedFile : null)
        this.registry.stamp(model.id, stamped)
        model = { ...model, ...stamped }
      }
    }
    if (!intact) {
      this.log.error({ model: model.id, file: model.file, size: copy?.size ?? null, registeredSize: model.sizeBytes }, 'a model file is damaged; not loading it')
      throw new ModelError(`the file of model ${model.id} is damaged or was changed (${copy === undefined ? 'missing' : `${copy.size} bytes, ${model.sizeBytes} registered`}): compile or fetch it again`)
    }
    if (model.optimizedFile === null) return model.file
    const optimized = statOf(model.optimizedFile)
    if (optimized !== undefined && optimized.size === model.optimizedSize && optimized.mtimeMs === model.optimizedMtimeMs) return model.optimizedFile
    this.log.warn({ model: model.id, file: model.optimizedFile }, 'the optimized graph of a model does not match what was registered; running the model as given')
    return model.file
  }

  /** Latencies (ms, measured inside the workers) of `runs` runs, `concurrency` at a time, after a warm-up. */
  private async timeRuns (id: string, inputs: TensorSpec[], runs: number, shapes: number[][], concurrency: number, maxBytes = MAX_SAMPLE_BYTES): Promise<number[]> {
    // One set of sample inputs per lane, handed back by the worker after each run and sent again: a fresh
    // multi-megabyte buffer per run would cost the event loop ~15 ms of page faults each time.
    // Compile's timing (one lane, the model's own fixed sizes) has a larger cap than a bench: a 1280-pixel
    // detector's input alone is 20 MB; only an absurd declaration is refused rather than allocated.
    const problem = sampleProblem(inputs, shapes, maxBytes)
    if (problem !== undefined) throw new ModelError(problem)
    const sample = inputs.map((spec, i) => [spec.name, sampleTensor({ ...spec, shape: shapes[i] as number[] }, undefined)] as const)
    const copy = (): Feeds => Object.fromEntries(sample.map(([name, t]) => [name, { ...t, data: t.data.slice() }]))
    let feeds = copy()
    for (let i = 0; i < WARMUP_RUNS; i++) feeds = (await this.pool.run(id, feeds)).inputs
    const ms: number[] = []
    let next = 0
    const lane = async (laneFeeds: Feeds): Promise<void> => {
      while (next < runs) {
        next++
        const result = await this.pool.run(id, laneFeeds)
        ms.push(result.ms)
        laneFeeds = result.inputs
      }
    }
    const lanes = Array.from({ length: Math.max(1, concurrency) }, (_, i) => lane(i === 0 ? feeds : copy()))
    await Promise.all(lanes)
    return ms
  }
}

/** An ONNX file's bytes, what its header says, and its id (the sha256 of the bytes). */
function readModel (file: string): { bytes: Buffer, header: OnnxHeader, opset: number, id: string } {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    throw new ModelError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const header = readOnnxHeader(bytes)
  return { bytes, header, opset: defaultOpset(header), id: createHash('sha256').update(bytes).digest('hex') }
}

/** Bytes of each input's sample at its shape; Infinity for a type no sample can be made of. */
function sampleSizes (inputs: TensorSpec[], shapes: number[][]): number[] {
  return inputs.map((spec, i) => sampleBytes({ ...spec, shape: shapes[i] as number[] }, undefined))
}

/** The largest set of sample inputs compile's timing makes (one, at the model's own fixed sizes). */
const COMPILE_SAMPLE_BYTES = 256 * 1024 * 1024

/** Bytes of one set of sample inputs. */
function sampleSetBytes (inputs: TensorSpec[], shapes: number[][]): number {
  return sampleSizes(inputs, shapes).reduce((a, b) => a + b, 0)
}

/**
 * Why no set of sample inputs is made for `inputs` at `shapes`, if one is not: an input of a type with no sample
 * data, or all of them together over `maxBytes` (one set is allocated per worker).
 */
function sampleProblem (inputs: TensorSpec[], shapes: number[][], maxBytes = MAX_SAMPLE_BYTES): string | undefined {
  const sizes = sampleSizes(inputs, shapes)
  const odd = inputs.find((_, i) => !Number.isFinite(sizes[i]))
  if (odd !== undefined) return `the model's input ${odd.name} is of type ${odd.dtype}, which has no sample data`
  const bytes = sampleSetBytes(inputs, shapes)
  if (bytes > maxBytes) return `the model's inputs at this shape take ${bytes} bytes; at most ${maxBytes} are allocated`
  return undefined
}

/** What a `needs` adds where some inputs were sampled as zeros, which a model may refuse whatever their sizes. */
function zeroNote (inputs: TensorSpec[]): string {
  const names = zeroSampled(inputs)
  return names === undefined ? '' : ` (${names} sampled as zeros: a model that checks their values cannot be measured with made-up inputs)`
}

/**
 * The height and width the model says its image inputs take (its metadata), for the sizes it is measured at where
 * nobody gave them; undefined where it says none or its file cannot be read (224×224 then).
 */
async function imageSizeIn (file: string): Promise<[number, number] | undefined> {
  try {
    return imageSizeOf(await readOnnxMetadata(file))
  } catch {
    return undefined
  }
}

/** sampleShapes, with a request's mistakes (an input the model lacks, a rank that differs) as a 400 naming `field`. */
function shapesFor (inputs: TensorSpec[], given: InputShapes, field: string, imageSize?: [number, number]): ReturnType<typeof sampleShapes> {
  try {
    return sampleShapes(inputs, given, imageSize)
  } catch (err) {
    if (err instanceof ShapeError) throw new BadRequestError(err.message, field === 'shape' ? 'shape' : `shapes.${err.input}`)
    throw err
  }
}

/**
 * Whether a model was compiled here (its signature read), measured or not: a copy only stored has no inputs or
 * outputs listed yet.
 */
function compiled (m: ModelRecord): boolean {
  return m.providers.length > 0 || m.inputs.length > 0 || m.outputs.length > 0
}

/** A registered model as `noodle models compile --json` describes it (and as the announcement carries it). */
export function compileResult (m: ModelRecord): CompileResult {
  return { id: m.id, inputs: m.inputs, outputs: m.outputs, providers: m.providers.map(({ name, p50Ms, p99Ms }) => ({ name, p50Ms, p99Ms })) }
}

function statOf (file: string): { size: number, mtimeMs: number } | undefined {
  try {
    const s = statSync(file)
    return s.isFile() ? { size: s.size, mtimeMs: Math.floor(s.mtimeMs) } : undefined
  } catch {
    return undefined
  }
}

function stamps (file: string, optimizedFile: string | null): Pick<ModelRecord, 'fileMtimeMs' | 'optimizedSize' | 'optimizedMtimeMs'> {
  const copy = statOf(file)
  const optimized = optimizedFile === null ? undefined : statOf(optimizedFile)
  return { fileMtimeMs: copy?.mtimeMs ?? null, optimizedSize: optimized?.size ?? null, optimizedMtimeMs: optimized?.mtimeMs ?? null }
}

function wholeOnnx (file: string): boolean {
  try {
    readOnnxHeader(readFileSync(file))
    return true
  } catch {
    return false
  }
}

async function sha256Of (file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

function figures (name: string, threads: number, ms: number[]): ProviderBenchmark {
  return { name, threads, runs: ms.length, p50Ms: round(percentile(ms, 50)), p99Ms: round(percentile(ms, 99)) }
}

/** Text from onnxruntime made one printable ASCII line, as the beacon carries it. */
function printable (text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').trim()
}

function round (x: number): number {
  return Math.round(x * 100) / 100
}
