import { Worker } from 'node:worker_threads'
import { InferenceError, WorkerError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { siblingModule } from '../common/modules.ts'
import type { HeavyModules } from './loader.ts'
import type { LoadResult, RunResult, WorkerReply, WorkerRequest } from './inference-worker.ts'
import type { Feeds } from './tensors.ts'
import type { Faults } from './faults.ts'
import { transferList } from './tensors.ts'

type Request = WorkerRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

interface Pending {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  /** When it is taken for wedged (performance.now()); one watchdog per pool checks, not a timer per call. */
  deadline: number
  timeoutMs: number
  op: Request['op']
  model: string | undefined
  /** A run: the slot's `busy` counts it until it settles. */
  run: boolean
}

interface Slot {
  worker: Worker
  pending: Map<number, Pending>
  /** Inferences queued on this worker. */
  busy: number
  /** Settles once a replacement worker has loaded the models its predecessor held (never rejects). */
  ready: Promise<void>
  /** `ready` has settled: runs skip awaiting it (a turn of the microtask queue per run). */
  isReady: boolean
  /** Requests posted and not answered yet, rejected ones included. */
  outstanding: number
  /** Taken out of the pool after a timeout: ended once it has answered what it was asked. */
  retired: boolean
}

/** Why a worker was replaced: it is gone, or it stopped answering (a model's op, if the call named one). */
type Loss = { kind: 'died' } | { kind: 'wedged', model: string | undefined }

/** Counter of inference workers replaced, by reason: `died` (exited, crashed) or `wedged` (a call timed out). */
export const WORKER_LOST_METRIC = 'noodle_inference_workers_lost_total'
/** Counter of models refused after leaving too many wedged workers behind. */
export const MODEL_REFUSED_METRIC = 'noodle_inference_models_refused_total'
/** Where those are counted: the agent's metrics registry, declared here so runtime/ needs nothing of agent/. */
export interface PoolCounter {
  inc (name: string, labels?: Record<string, string>): void
}

/** A run that takes longer than this is taken for a wedged worker; loading and optimizing a large model may take minutes. */
const RUN_TIMEOUT_MS = 60_000
const LOAD_TIMEOUT_MS = 10 * 60_000
/**
 * Wedged workers kept alive at most (each holds a thread and its onnxruntime sessions until it answers): a worker
 * cannot be ended while onnxruntime runs on it, since that aborts the whole process. A model that leaves this many
 * stuck is refused, so a model that hangs on every run cannot add one thread per timeout.
 */
const MAX_WEDGED_WORKERS = 2

/**
 * A small pool of inference threads (runtime/inference-worker.ts). Every model is loaded on every thread, and
 * each run goes to the least busy one, so several runs proceed at once and the event loop only passes messages.
 * A worker that dies (onnxruntime aborting, out of memory) or does not answer in time is replaced by a fresh one
 * that loads the same models; the calls it had in flight are rejected with a WorkerError, so none can hang.
 */
export class InferencePool {
  readonly size: number
  /** onnxruntime's intra-op threads per worker: the cores but one, shared out between the workers… */
  readonly threads: number
  /** …or all of them for one model, where that measured faster (one inference at a time, as a camera runs). */
  readonly maxThreads: number
  private readonly log: Logger
  private readonly runTimeoutMs: number
  private readonly loadTimeoutMs: number
  private readonly maxWedged: number
  private readonly workerUrl: URL
  private readonly metrics: PoolCounter | undefined
  private readonly modules: Pick<HeavyModules, 'require'> | undefined
  private readonly faults: Faults | undefined
  private slots: Slot[] = []
  /** Replaced workers that timed out and are still alive: ended once they answer what they were asked. */
  private readonly wedged = new Set<Slot>()
  /** Models refused after a worker wedged on them past the cap, with why; loading them again lifts it. */
  private readonly refused = new Map<string, string>()
  /** What every worker holds, so that a replacement loads the same. */
  private readonly models = new Map<string, { file: string, provider: string, threads: number }>()
  private nextId = 1
  /** The watchdog (see watch()) and the deadline it is armed for. */
  private watchdog: NodeJS.Timeout | undefined
  private watchdogAt = Infinity
  private started = false
  private replacedCount = 0

  constructor (components: {
    log: Logger, cpus: number, metrics?: PoolCounter, size?: number, runTimeoutMs?: number, loadTimeoutMs?: number, maxWedged?: number
    /** The worker's module; tests give one that can be made to hang. */
    workerUrl?: URL
    /** Whether onnxruntime is installed: no worker starts without it (a core release). */
    modules?: Pick<HeavyModules, 'require'>
    /** Faults injected into every worker (NOODLE_FAULTS). */
    faults?: Faults
  }) {
    this.faults = components.faults
    this.log = components.log
    this.metrics = components.metrics
    this.modules = components.modules
    this.size = components.size ?? Math.max(1, Math.floor(components.cpus / 2))
    // One core stays free for the event loop (gossip, failure detection, ingest): on a 2-core box, inference
    // that took both cores delayed the loop ~20 ms at p99; with one it stays well under.
    this.threads = Math.max(1, Math.floor((components.cpus - 1) / this.size))
    this.maxThreads = Math.max(1, components.cpus - 1)
    this.runTimeoutMs = components.runTimeoutMs ?? RUN_TIMEOUT_MS
    this.loadTimeoutMs = components.loadTimeoutMs ?? LOAD_TIMEOUT_MS
    this.maxWedged = components.maxWedged ?? MAX_WEDGED_WORKERS
    this.workerUrl = components.workerUrl ?? siblingModule(import.meta.url, 'inference-worker')
  }

  /**
   * Throws ModuleUnavailableError where onnxruntime is not installed: a worker would die importing it, and be
   * replaced, over and over.
   */
  checkAvailable (): void {
    this.modules?.require('inference', 'running a model')
  }

  /** Threads start on first use: an agent with no models loads no onnxruntime (tens of MB per thread). */
  start (): void {
    this.started = true
  }

  async stop (): Promise<void> {
    this.started = false
    const slots = this.slots
    this.slots = []
    // Wedged workers are left to the process's exit: ending one inside onnxruntime would abort it.
    this.wedged.clear()
    clearTimeout(this.watchdog)
    this.watchdog = undefined
    for (const slot of slots) this.rejectAll(slot, new WorkerError('the inference pool stopped'))
    // A worker still inside a call (a run, a load) is ended once it answers, or left to the process's exit: ending
    // it inside onnxruntime would abort the whole process. An idle one is ended now.
    await Promise.all(slots.map(async (s) => {
      if (s.outstanding > 0) {
        s.retired = true
        s.worker.unref()
      } else {
        await s.worker.terminate()
      }
    }))
  }

  /** Whether the pool is started (runs are taken). */
  get running (): boolean {
    return this.started
  }

  /** Workers replaced since the pool started (they died or stopped answering). */
  get replaced (): number {
    return this.replacedCount
  }

  /** Replaced workers still alive, stuck in a call: at most `maxWedged`, but for the models that stuck them last. */
  get stuck (): number {
    return this.wedged.size
  }

  /** Models refused because they wedged workers, and why. */
  refusals (): Map<string, string> {
    return new Map(this.refused)
  }

  private spawn (): Slot {
    const worker = new Worker(this.workerUrl, { workerData: { faults: this.faults } })
    const slot: Slot = { worker, pending: new Map(), busy: 0, ready: Promise.resolve(), isReady: true, outstanding: 0, retired: false }
    worker.on('message', (reply: WorkerReply) => {
      slot.outstanding--
      if (slot.retired && slot.outstanding === 0) this.end(slot)
      const waiter = slot.pending.get(reply.id)
      if (waiter === undefined) return
      slot.pending.delete(reply.id)
      if (waiter.run) slot.busy--
      if (reply.ok) waiter.resolve(reply.result)
      else waiter.reject(new InferenceError(reply.error))
    })
    worker.on('error', (err) => { this.replace(slot, `the inference worker failed: ${err.message}`, { kind: 'died' }) })
    worker.on('exit', (code) => {
      this.wedged.delete(slot)
      this.replace(slot, `the inference worker exited (code ${code})`, { kind: 'died' })
    })
    return slot
  }

  /**
   * Rejects what `slot` had in flight and puts a fresh worker in its place (once: error and exit both come). A
   * worker that is still alive (it timed out) is ended only once it is idle: terminating a thread inside
   * onnxruntime's native code aborts the whole process. Until then it is counted as wedged; a model that wedges
   * one while `maxWedged` are stuck is refused, so it cannot leave one more behind at each timeout.
   */
  private replace (slot: Slot, reason: string, loss: Loss): void {
    const index = this.slots.indexOf(slot)
    if (index === -1) return
    this.log.error({ reason, inFlight: slot.pending.size }, 'inference worker lost; starting another')
    this.metrics?.inc(WORKER_LOST_METRIC, { reason: loss.kind })
    this.rejectAll(slot, new WorkerError(reason))
    slot.retired = true
    if (slot.outstanding === 0 || loss.kind === 'died') {
      void slot.worker.terminate()
    } else {
      // It must not keep the agent from exiting either.
      slot.worker.unref()
      this.wedged.add(slot)
      if (loss.model !== undefined && this.wedged.size >= this.maxWedged) this.refuse(loss.model, reason)
    }
    const fresh = this.spawn()
    this.slots[index] = fresh
    fresh.isReady = false
    fresh.ready = this.reload(fresh).finally(() => { fresh.isReady = true })
    this.replacedCount++
  }

  /** A wedged worker answered at last: it can be ended now. */
  private end (slot: Slot): void {
    this.wedged.delete(slot)
    void slot.worker.terminate()
  }

  /** Runs of `model` are refused until it is loaded again (compiled again, or the agent restarted). */
  private refuse (model: string, reason: string): void {
    const why = `model ${model} left ${this.wedged.size} inference workers stuck (${reason}); it is refused until it is compiled again`
    this.refused.set(model, why)
    this.models.delete(model)
    this.metrics?.inc(MODEL_REFUSED_METRIC)
    this.log.error({ model, stuckWorkers: this.wedged.size, reason }, 'a model wedged inference workers; refusing it')
  }

  private rejectAll (slot: Slot, err: WorkerError): void {
    const waiters = [...slot.pending.values()]
    slot.pending.clear()
    for (const waiter of waiters) {
      if (waiter.run) slot.busy--
      waiter.reject(err)
    }
  }

  /**
   * Arms the pool's one watchdog for `deadline` unless it is armed for an earlier one. A timer per call (set and
   * cleared around every run) cost the hot path; calls are answered long before their deadline, so the watchdog
   * mostly wakes to find nothing late and sleeps again until the earliest deadline still pending.
   */
  private watch (deadline: number): void {
    if (this.watchdog !== undefined) {
      if (this.watchdogAt <= deadline) return
      clearTimeout(this.watchdog)
    }
    this.watchdogAt = deadline
    this.watchdog = setTimeout(() => { this.check() }, Math.max(0, deadline - performance.now())).unref()
  }

  /** The watchdog: every worker holding a call past its deadline is replaced (its calls rejected, none left hanging). */
  private check (): void {
    this.watchdog = undefined
    const now = performance.now()
    for (const slot of [...this.slots]) {
      for (const waiter of slot.pending.values()) {
        if (waiter.deadline > now) continue
        // A worker that does not answer is wedged: replacing it rejects this call and the others it holds.
        this.replace(slot, `the inference worker did not answer a ${waiter.op} within ${waiter.timeoutMs} ms`, { kind: 'wedged', model: waiter.model })
        break
      }
    }
    // Then it sleeps until the earliest deadline still pending (a replacement's reloads included).
    let next = Infinity
    for (const slot of this.slots) for (const waiter of slot.pending.values()) next = Math.min(next, waiter.deadline)
    if (next !== Infinity) this.watch(next)
  }

  private async reload (slot: Slot): Promise<void> {
    for (const [model, { file, provider, threads }] of this.models) {
      try {
        await this.call(slot, { op: 'load', model, file, provider, threads }, undefined, this.loadTimeoutMs)
      } catch (err) {
        this.log.warn({ model, err: (err as Error).message }, 'a replacement inference worker could not load a model')
      }
    }
  }

  private call (slot: Slot, request: Request, transfer?: ArrayBuffer[], timeoutMs = this.loadTimeoutMs, run = false): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // The worker was replaced or the pool stopped while the caller waited: nothing would ever answer.
      if (!this.slots.includes(slot)) {
        reject(new WorkerError(this.started ? 'the inference worker was replaced' : 'the inference pool stopped'))
        return
      }
      const id = this.nextId++
      // The request as it goes, the id added in place (the caller's object is its own, made for this call).
      const message = request as WorkerRequest
      message.id = id
      try {
        slot.worker.postMessage(message, transfer)
      } catch (err) {
        reject(err as Error)
        return
      }
      slot.outstanding++
      const deadline = performance.now() + timeoutMs
      slot.pending.set(id, { resolve, reject, deadline, timeoutMs, op: request.op, model: 'model' in request ? request.model : undefined, run })
      if (run) slot.busy++
      this.watch(deadline)
    })
  }

  private first (): Slot {
    if (!this.started) throw new WorkerError('the inference pool is not started')
    if (this.slots.length === 0) this.checkAvailable()
    if (this.slots.length === 0) this.slots = Array.from({ length: this.size }, () => this.spawn())
    return this.slots[0] as Slot
  }

  /** Loads a model on every worker with `provider` and `threads`; resolves with its inputs and outputs. */
  async load (model: string, file: string, provider: string, threads = this.threads): Promise<LoadResult> {
    this.first()
    this.refused.delete(model)
    const results = await Promise.all(this.slots.map(async (slot) => {
      await slot.ready
      return await this.call(slot, { op: 'load', model, file, provider, threads }) as LoadResult
    }))
    this.models.set(model, { file, provider, threads })
    return results[0] as LoadResult
  }

  async unload (model: string): Promise<void> {
    this.first()
    this.models.delete(model)
    this.refused.delete(model)
    await Promise.all(this.slots.map(async (slot) => {
      await slot.ready
      await this.call(slot, { op: 'unload', model })
    }))
  }

  /** Writes the graph-optimized form of `file` to `out` (off the event loop: it can take seconds). */
  async optimize (file: string, out: string): Promise<void> {
    const slot = this.first()
    await slot.ready
    await this.call(slot, { op: 'optimize', file, out })
  }

  /**
   * Runs a loaded model on the least busy worker. The feeds' buffers are transferred: do not reuse them. Runs of
   * a model that queue on a worker while it is busy may be run there as one batch (runtime/inference-worker.ts).
   */
  run (model: string, feeds: Feeds): Promise<RunResult> {
    const refusal = this.refused.get(model)
    if (refusal !== undefined) return Promise.reject(new WorkerError(refusal))
    let slot: Slot
    try {
      slot = this.first()
    } catch (err) {
      return Promise.reject(err as Error)
    }
    for (let i = 1; i < this.slots.length; i++) {
      const s = this.slots[i] as Slot
      if (s.busy < slot.busy) slot = s
    }
    if (slot.isReady) return this.call(slot, { op: 'run', model, feeds }, transferList(feeds), this.runTimeoutMs, true) as Promise<RunResult>
    // A replacement still loading its models: the run waits for it, counted as queued there meanwhile.
    const waiting = slot
    waiting.busy++
    return waiting.ready.then(() => {
      waiting.busy--
      return this.call(waiting, { op: 'run', model, feeds }, transferList(feeds), this.runTimeoutMs, true) as Promise<RunResult>
    })
  }
}

