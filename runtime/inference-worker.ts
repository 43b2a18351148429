import { parentPort } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
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

class InferenceWorker {
  private readonly sessions = new Map<string, ort.InferenceSession>()
  private readonly port: MessagePort

  constructor (port: MessagePort) {
    this.port = port
    port.on('message', (req: WorkerRequest) => { void this.handle(req) })
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
        await this.sessions.get(req.model)?.release()
        const session = await ort.InferenceSession.create(req.file, {
          executionProviders: [req.provider],
          intraOpNumThreads: req.threads,
          interOpNumThreads: 1
        })
        this.sessions.set(req.model, session)
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
        const feeds: Record<string, ort.Tensor> = {}
        for (const [name, t] of Object.entries(req.feeds)) feeds[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as never, t.dims)
        const started = performance.now()
        const results = await session.run(feeds)
        const ms = performance.now() - started
        const outputs: Record<string, WireTensor> = {}
        for (const [name, t] of Object.entries(results)) outputs[name] = { dtype: t.type, dims: [...t.dims], data: t.data as WireTensor['data'] }
        return { outputs, ms, inputs: req.feeds } satisfies RunResult
      }
      case 'unload': {
        await this.sessions.get(req.model)?.release()
        this.sessions.delete(req.model)
        return null
      }
    }
  }
}

// onnxruntime's own log goes to stderr in colour; every failure it logs also comes back to us as an exception,
// which the agent logs as JSON. (Dawn, WebGPU's library, still prints its own warnings where there is no GPU.)
ort.env.logLevel = 'fatal'
if (parentPort !== null) new InferenceWorker(parentPort) // eslint-disable-line no-new
