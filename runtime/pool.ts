import { Worker } from 'node:worker_threads'
import type { Logger } from '../agent/logger.ts'
import type { LoadResult, RunResult, WorkerReply, WorkerRequest } from './inference-worker.ts'
import type { Feeds } from './tensors.ts'
import { transferList } from './tensors.ts'

type Request = WorkerRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

interface Slot {
  worker: Worker
  pending: Map<number, { resolve: (value: unknown) => void, reject: (err: Error) => void }>
  /** Inferences queued on this worker. */
  busy: number
}

/**
 * A small pool of inference threads (runtime/inference-worker.ts). Every model is loaded on every thread, and
 * each run goes to the least busy one, so several runs proceed at once and the event loop only passes messages.
 */
export class InferencePool {
  readonly size: number
  /** onnxruntime's intra-op threads per worker: the cores but one, shared out between the workers… */
  readonly threads: number
  /** …or all of them for one model, where that measured faster (one inference at a time, as a camera runs). */
  readonly maxThreads: number
  private readonly log: Logger
  private slots: Slot[] = []
  private nextId = 1
  private started = false

  constructor (components: { log: Logger, cpus: number, size?: number }) {
    this.log = components.log
    this.size = components.size ?? Math.max(1, Math.floor(components.cpus / 2))
    // One core stays free for the event loop (gossip, failure detection, ingest): on a 2-core box, inference
    // that took both cores delayed the loop ~20 ms at p99; with one it stays well under.
    this.threads = Math.max(1, Math.floor((components.cpus - 1) / this.size))
    this.maxThreads = Math.max(1, components.cpus - 1)
  }

  /** Threads start on first use: an agent with no models loads no onnxruntime (tens of MB per thread). */
  start (): void {
    this.started = true
  }

  async stop (): Promise<void> {
    this.started = false
    const slots = this.slots
    this.slots = []
    await Promise.all(slots.map(async (s) => await s.worker.terminate()))
  }

  private spawn (): Slot {
    const worker = new Worker(new URL('./inference-worker.ts', import.meta.url))
    const slot: Slot = { worker, pending: new Map(), busy: 0 }
    worker.on('message', (reply: WorkerReply) => {
      const waiter = slot.pending.get(reply.id)
      slot.pending.delete(reply.id)
      if (reply.ok) waiter?.resolve(reply.result)
      else waiter?.reject(new Error(reply.error))
    })
    worker.on('error', (err) => {
      this.log.error({ err }, 'inference worker failed')
      for (const waiter of slot.pending.values()) waiter.reject(err)
      slot.pending.clear()
    })
    return slot
  }

  private call (slot: Slot, request: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject })
      slot.worker.postMessage({ ...request, id }, transfer)
    })
  }

  private first (): Slot {
    if (!this.started) throw new Error('the inference pool is not started')
    if (this.slots.length === 0) this.slots = Array.from({ length: this.size }, () => this.spawn())
    return this.slots[0] as Slot
  }

  /** Loads a model on every worker with `provider` and `threads`; resolves with its inputs and outputs. */
  async load (model: string, file: string, provider: string, threads = this.threads): Promise<LoadResult> {
    this.first()
    const results = await Promise.all(this.slots.map(async (slot) =>
      await this.call(slot, { op: 'load', model, file, provider, threads }) as LoadResult))
    return results[0] as LoadResult
  }

  async unload (model: string): Promise<void> {
    this.first()
    await Promise.all(this.slots.map(async (slot) => await this.call(slot, { op: 'unload', model })))
  }

  /** Writes the graph-optimized form of `file` to `out` (off the event loop: it can take seconds). */
  async optimize (file: string, out: string): Promise<void> {
    await this.call(this.first(), { op: 'optimize', file, out })
  }

  /** Runs a loaded model on the least busy worker. The feeds' buffers are transferred: do not reuse them. */
  async run (model: string, feeds: Feeds): Promise<RunResult> {
    const slot = this.slots.reduce((best, s) => s.busy < best.busy ? s : best, this.first())
    slot.busy++
    try {
      return await this.call(slot, { op: 'run', model, feeds }, transferList(feeds)) as RunResult
    } finally {
      slot.busy--
    }
  }
}
