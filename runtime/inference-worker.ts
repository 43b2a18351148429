import { parentPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { lostProviders, NO_FAULTS } from './faults.ts'
import type { Faults } from './faults.ts'
import type { Feeds, TensorSpec, WireTensor } from './tensors.ts'
import { transferList } from './tensors.ts'

/**
 * One inference thread: it holds onnxruntime sessions and runs them, so `session.run()` (which blocks for the
 * whole inference) never blocks the agent's event loop. Requests come from runtime/pool.ts.
 */

export type WorkerRequest =
  | { id: number, op: 'load', model: string, file: string, provider: string, threads: number }
  | { id: number, op: 'optimize', file: string, out: string }
  | { id: number, op: 'run', model: string, feeds: Feeds }
  | { id: number, op: 'unload', model: string }

export interface LoadResult { inputs: TensorSpec[], outputs: TensorSpec[] }
/** The outputs, the inference time, and the input tensors handed back, so their buffers can be filled again. */
export interface RunResult { outputs: Record<string, WireTensor>, ms: number, inputs: Feeds }
export type WorkerReply = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: string }

function specs (names: readonly string[], metadata: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return names.map((name, i) => {
    const m = metadata[i]
    return m?.isTensor === true
      ? { name, dtype: m.type, shape: m.shape.map((d) => typeof d === 'number' ? d : String(d)) }
      : { name, dtype: 'unknown', shape: [] }
  })
}

export class InferenceWorker {
  private readonly sessions = new Map<string, ort.InferenceSession>()
  /** Runs in flight per session: a session replaced or unloaded meanwhile is released once they end. */
  private readonly running = new Map<ort.InferenceSession, number>()
  private readonly retired = new Set<ort.InferenceSession>()
  /** The provider each model's session was loaded with, as the pool named it (a simulated one included). */
  private readonly providers = new Map<string, string>()
  private readonly port: MessagePort
  private readonly faults: Faults

  constructor (port: MessagePort, faults: Faults = NO_FAULTS) {
    this.port = port
    this.faults = faults
  }

  /** An injected fault (runtime/faults.ts): the provider is listed as lost, so what runs on it fails. */
  private checkLost (provider: string | undefined): void {
    if (provider === undefined || this.faults.lostFile === undefined) return
    const why = lostProviders(this.faults).get(provider)
    if (why !== undefined) throw new Error(why)
  }

  /** Answers the pool's requests on the port, each as it comes (the port keeps the thread alive). */
  serve (): void {
    this.port.on('message', (req: WorkerRequest) => { void this.handle(req) })
  }

  private async handle (req: WorkerRequest): Promise<void> {
    try {
      const result = await this.perform(req)
      const transfer = req.op === 'run' ? [...transferList((result as RunResult).outputs), ...transferList((result as RunResult).inputs)] : []
      this.port.postMessage({ id: req.id, ok: true, result } satisfies WorkerReply, transfer)
    } catch (err) {
      this.port.postMessage({ id: req.id, ok: false, error: (err as Error).message } satisfies WorkerReply)
    }
  }

  private async perform (req: WorkerRequest): Promise<unknown> {
    switch (req.op) {
      case 'load': {
        // Loaded again (other threads, or two callers at once): runs of the old session in flight finish on it.
        this.checkLost(req.provider)
        const session = await ort.InferenceSession.create(req.file, {
          executionProviders: [this.faults.simulate.includes(req.provider) ? 'cpu' : req.provider],
          intraOpNumThreads: req.threads,
          interOpNumThreads: 1
        })
        const old = this.sessions.get(req.model)
        this.sessions.set(req.model, session)
        this.providers.set(req.model, req.provider)
        if (old !== undefined) await this.retire(old)
        return { inputs: specs(session.inputNames, session.inputMetadata), outputs: specs(session.outputNames, session.outputMetadata) } satisfies LoadResult
      }
      case 'optimize': {
        // Loading with optimizedModelFilePath writes the graph as optimized for this box.
        const session = await ort.InferenceSession.create(req.file, { graphOptimizationLevel: 'all', optimizedModelFilePath: req.out })
        await session.release()
        return null
      }
      case 'run': {
        const session = this.sessions.get(req.model)
        if (session === undefined) throw new Error(`model ${req.model} is not loaded`)
        this.checkLost(this.providers.get(req.model))
        const feeds: Record<string, ort.Tensor> = {}
        for (const [name, t] of Object.entries(req.feeds)) feeds[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as never, t.dims)
        const started = performance.now()
        this.running.set(session, (this.running.get(session) ?? 0) + 1)
        let results: ort.InferenceSession.ReturnType
        try {
          results = await session.run(feeds)
        } finally {
          const left = (this.running.get(session) ?? 1) - 1
          if (left > 0) this.running.set(session, left)
          else {
            this.running.delete(session)
            if (this.retired.delete(session)) await session.release()
          }
        }
        const ms = performance.now() - started
        const outputs: Record<string, WireTensor> = {}
        for (const [name, t] of Object.entries(results)) outputs[name] = { dtype: t.type, dims: [...t.dims], data: t.data as WireTensor['data'] }
        return { outputs, ms, inputs: req.feeds } satisfies RunResult
      }
      case 'unload': {
        const old = this.sessions.get(req.model)
        this.sessions.delete(req.model)
        this.providers.delete(req.model)
        if (old !== undefined) await this.retire(old)
        return null
      }
    }
  }

  /** Releases a session no longer named, now or once its runs in flight end (releasing it under them fails them). */
  private async retire (session: ort.InferenceSession): Promise<void> {
    if (this.running.has(session)) this.retired.add(session)
    else await session.release()
  }
}

// onnxruntime's own log goes to stderr in colour; every failure it logs also comes back to us as an exception,
// which the agent logs as JSON. (Dawn, WebGPU's library, still prints its own warnings where there is no GPU.)
ort.env.logLevel = 'fatal'
if (parentPort !== null) new InferenceWorker(parentPort, (workerData as { faults?: Faults } | null)?.faults).serve()
