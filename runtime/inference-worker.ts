import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import { lostProviders, NO_FAULTS } from './faults.ts'
import type { Faults } from './faults.ts'
import type { Feeds, TensorSpec, WireTensor } from './tensors.ts'
import { batchable, transferList } from './tensors.ts'

/**
 * One inference thread: it holds onnxruntime sessions and runs them, so `session.run()` (which blocks for the
 * whole inference) never blocks the agent's event loop. Requests come from runtime/pool.ts.
 *
 * Runs are taken one at a time, in order. Before each, the requests that queued on the port meanwhile are taken
 * at once (receiveMessageOnPort), and those for the same model whose inputs differ only in their first (batch)
 * dimension are run together as one batch (a model `batchable` says so, and only as many as its time per sample
 * allows: see BATCH_MAX_MS), the outputs split back by rows: several requests in flight then cost one
 * `session.run()` and its fixed overhead instead of one each.
 */

/** A batch is at most this many rows (samples)… */
const MAX_BATCH_ROWS = 16
/**
 * …and expected (from the model's measured time per row) to take at most this long: a model slower than this
 * runs alone, so batching never holds a large model's results back behind others' (it only pays where the
 * per-call overhead is a real share of a run).
 */
const BATCH_MAX_MS = 10
/** …and its inputs take at most this many bytes. */
const BATCH_MAX_BYTES = 16 * 1024 * 1024
/**
 * How long the worker keeps looking at its port once its queue is empty, or holds one run where the last run
 * answered several (their callers are about to send again: a pair can be batched), before it sleeps or runs what
 * it has, where the last request came this soon after the worker went idle (a caller that sends its next run as
 * soon as it has the last one's result: a camera pipeline, a bench). Woken from sleep, a thread takes tens of
 * microseconds to get a message, a real share of a sub-millisecond run. A spin that finds nothing stops spinning
 * until a request is that quick again, so a worker that is asked now and then never spins. It never waits for
 * more than two: waiting for every caller of a large batch to come back idles the worker for a round trip per
 * batch (bench/inference, the classifier 4 in flight: ×0.99–1.02 of a bare loop so, ×1.01–1.05 running batches
 * of what queued meanwhile, two by two).
 */
const SPIN_MS = 0.1
/** Runs the worker waits to have queued (at most as many as the last run answered). */
const WAIT_FOR = 2

export type WorkerRequest =
  | { id: number, op: 'load', model: string, file: string, provider: string, threads: number }
  | { id: number, op: 'optimize', file: string, out: string }
  | { id: number, op: 'run', model: string, feeds: Feeds }
  | { id: number, op: 'unload', model: string }

type RunRequest = Extract<WorkerRequest, { op: 'run' }>

export interface LoadResult { inputs: TensorSpec[], outputs: TensorSpec[] }
/**
 * The outputs, the inference time, and the input tensors handed back, so their buffers can be filled again.
 * `batch`: how many requests shared the run (1 alone); `ms` is then the whole batch's time, what each waited.
 */
export interface RunResult { outputs: Record<string, WireTensor>, ms: number, inputs: Feeds, batch: number }
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
  /** Runs received and not started yet, in order; `pumping` while they are being worked through. */
  private readonly queue: RunRequest[] = []
  private pumping = false
  /** When the queue last ran empty, and whether to spin (SPIN_MS) the next time it does. */
  private idleSince = -Infinity
  private spin = false
  /** Runs to wait for: as many as the last run answered (they are likely to come back soon), at most WAIT_FOR. */
  private answered = 1
  /** Models that may be batched, with their time per row (an average of the last runs) and reusable batch inputs. */
  private readonly batching = new Map<string, { msPerRow: number | undefined, buffers: Map<string, WireTensor['data']> }>()

  constructor (port: MessagePort, faults: Faults = NO_FAULTS) {
    this.port = port
    this.faults = faults
  }

  /** An injected fault (runtime/faults.ts): a slower device, timed as part of the run. */
  private async slowDown (model: string): Promise<void> {
    const slow = this.faults.slowMs?.[this.providers.get(model) ?? '']
    if (slow !== undefined && slow > 0) await new Promise((resolve) => setTimeout(resolve, slow))
  }

  /** An injected fault (runtime/faults.ts): the provider is listed as lost, so what runs on it fails. */
  private checkLost (provider: string | undefined): void {
    if (provider === undefined || this.faults.lostFile === undefined) return
    const why = lostProviders(this.faults).get(provider)
    if (why !== undefined) throw new Error(why)
  }

  /** Answers the pool's requests on the port, each as it comes (the port keeps the thread alive). */
  serve (): void {
    this.port.on('message', (req: WorkerRequest) => { this.accept(req) })
  }

  /** Runs join the queue; the rest (loads, unloads) are handled at once, as they come. */
  private accept (req: WorkerRequest): void {
    if (req.op !== 'run') {
      void this.handle(req)
      return
    }
    this.queue.push(req)
    if (!this.pumping) {
      // Come from sleep: had the worker spun, it would have had this one sooner.
      this.spin = performance.now() - this.idleSince <= SPIN_MS
      void this.pump()
    }
  }

  /** Works through the queued runs, one run (alone or a batch) at a time, taking what queued on the port before each. */
  private async pump (): Promise<void> {
    this.pumping = true
    try {
      for (;;) {
        for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) this.accept(m.message as WorkerRequest)
        if (this.spin && this.queue.length < this.answered) this.spinForNext()
        const head = this.queue.shift()
        if (head === undefined) {
          this.idleSince = performance.now()
          return
        }
        const batch = this.gather(head)
        this.answered = Math.min(WAIT_FOR, batch?.length ?? 1)
        if (batch === undefined) await this.handle(head)
        else await this.runBatch(head.model, batch)
      }
    } finally {
      this.pumping = false
    }
  }

  /**
   * Takes what comes on the port for up to SPIN_MS, until as many runs are queued as the last run answered (at
   * most WAIT_FOR); if none comes, spins no more for now.
   */
  private spinForNext (): void {
    const until = performance.now() + SPIN_MS
    do {
      const m = receiveMessageOnPort(this.port)
      if (m !== undefined) this.accept(m.message as WorkerRequest)
      if (this.queue.length >= this.answered) return
    } while (performance.now() < until)
    if (this.queue.length === 0) this.spin = false
  }

  private async handle (req: WorkerRequest): Promise<void> {
    try {
      const result = await this.perform(req)
      if (req.op === 'run') this.reply(req.id, result as RunResult)
      else this.port.postMessage({ id: req.id, ok: true, result } satisfies WorkerReply)
    } catch (err) {
      this.port.postMessage({ id: req.id, ok: false, error: (err as Error).message } satisfies WorkerReply)
    }
  }

  private reply (id: number, result: RunResult): void {
    this.port.postMessage({ id, ok: true, result } satisfies WorkerReply, transferList(result.inputs, transferList(result.outputs)))
  }

  /**
   * The queued requests that can run in one batch with `head` (taken out of the queue, `head` first), or
   * undefined where it runs alone: the model is not batchable, nothing like it is queued, or it is too slow.
   */
  private gather (head: RunRequest): RunRequest[] | undefined {
    if (this.queue.length === 0) return undefined
    const state = this.batching.get(head.model)
    const session = this.sessions.get(head.model)
    if (state?.msPerRow === undefined || session === undefined) return undefined
    const maxRows = Math.min(MAX_BATCH_ROWS, Math.floor(BATCH_MAX_MS / state.msPerRow))
    const key = batchKey(session.inputNames, head.feeds)
    if (key === undefined || key.rows >= maxRows) return undefined
    const batch = [head]
    let rows = key.rows
    let bytes = key.bytes
    for (let i = 0; i < this.queue.length && rows < maxRows;) {
      const req = this.queue[i] as RunRequest
      const other = req.model === head.model ? batchKey(session.inputNames, req.feeds) : undefined
      if (other?.key === key.key && rows + other.rows <= maxRows && bytes + other.bytes <= BATCH_MAX_BYTES) {
        batch.push(req)
        rows += other.rows
        bytes += other.bytes
        this.queue.splice(i, 1)
      } else {
        i++
      }
    }
    return batch.length > 1 ? batch : undefined
  }

  /**
   * Runs `batch` (requests for `model` whose inputs differ only in their first dimension) as one: each input
   * concatenated along it, each output split back by rows. Where the batched run fails, or its outputs do not have
   * one row per input row (the first dimension was not a batch after all: the model is not batched again), each
   * request is run alone, so that only a request at fault fails, with its own error.
   */
  private async runBatch (model: string, batch: RunRequest[]): Promise<void> {
    const state = this.batching.get(model)
    const session = this.sessions.get(model)
    const first = (batch[0] as RunRequest).feeds
    let rows = 0
    for (const req of batch) rows += (Object.values(req.feeds)[0] as WireTensor).dims[0] as number
    let results: ort.InferenceSession.ReturnType | undefined
    let ms = 0
    if (state !== undefined && session !== undefined) {
      try {
        this.checkLost(this.providers.get(model))
        const feeds: Record<string, ort.Tensor> = {}
        for (const name in first) {
          const t = first[name] as WireTensor
          const rowLength = t.data.length / (t.dims[0] as number)
          const length = rows * rowLength
          let buffer = state.buffers.get(name)
          if (buffer === undefined || buffer.constructor !== t.data.constructor || buffer.length < length) {
            buffer = new (t.data.constructor as new (n: number) => WireTensor['data'])(length)
            state.buffers.set(name, buffer)
          }
          const data = buffer.length === length ? buffer : buffer.subarray(0, length)
          let at = 0
          for (const req of batch) {
            const part = (req.feeds[name] as WireTensor).data
            ;(data as Uint8Array).set(part as Uint8Array, at)
            at += part.length
          }
          feeds[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, data as never, [rows, ...t.dims.slice(1)])
        }
        const started = performance.now()
        if (this.faults.slowMs !== undefined) await this.slowDown(model)
        results = await this.runSession(session, feeds)
        ms = performance.now() - started
      } catch {
        results = undefined
      }
    }
    if (results !== undefined && Object.values(results).some((t) => t.dims[0] !== rows || typeof t.data[0] === 'string')) {
      this.batching.delete(model)
      results = undefined
    }
    if (results === undefined) {
      for (const req of batch) await this.handle(req)
      return
    }
    this.timed(model, ms, rows)
    let row = 0
    for (const req of batch) {
      const own = (Object.values(req.feeds)[0] as WireTensor).dims[0] as number
      const outputs: Record<string, WireTensor> = {}
      for (const name in results) {
        const t = results[name] as ort.Tensor
        const data = t.data as WireTensor['data']
        const rowLength = data.length / rows
        outputs[name] = { dtype: t.type, dims: [own, ...t.dims.slice(1)], data: data.slice(row * rowLength, (row + own) * rowLength) }
      }
      row += own
      try {
        this.reply(req.id, { outputs, ms, inputs: req.feeds, batch: batch.length })
      } catch (err) {
        this.port.postMessage({ id: req.id, ok: false, error: (err as Error).message } satisfies WorkerReply)
      }
    }
  }

  /** A batchable model's time per row, averaged over its last runs: how many rows fit in a batch. */
  private timed (model: string, ms: number, rows: number): void {
    const state = this.batching.get(model)
    if (state === undefined) return
    const perRow = ms / rows
    state.msPerRow = state.msPerRow === undefined ? perRow : 0.8 * state.msPerRow + 0.2 * perRow
  }

  /** session.run(), counted as running so that a session retired meanwhile is released only after it. */
  private async runSession (session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
    this.running.set(session, (this.running.get(session) ?? 0) + 1)
    try {
      return await session.run(feeds)
    } finally {
      const left = (this.running.get(session) ?? 1) - 1
      if (left > 0) this.running.set(session, left)
      else {
        this.running.delete(session)
        if (this.retired.delete(session)) await session.release()
      }
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
        const result = { inputs: specs(session.inputNames, session.inputMetadata), outputs: specs(session.outputNames, session.outputMetadata) } satisfies LoadResult
        if (batchable(result.inputs, result.outputs)) this.batching.set(req.model, { msPerRow: undefined, buffers: new Map() })
        else this.batching.delete(req.model)
        if (old !== undefined) await this.retire(old)
        return result
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
        for (const name in req.feeds) {
          const t = req.feeds[name] as WireTensor
          feeds[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as never, t.dims)
        }
        const started = performance.now()
        if (this.faults.slowMs !== undefined) await this.slowDown(req.model)
        const results = await this.runSession(session, feeds)
        const ms = performance.now() - started
        const outputs: Record<string, WireTensor> = {}
        for (const name in results) {
          const t = results[name] as ort.Tensor
          outputs[name] = { dtype: t.type, dims: t.dims as number[], data: t.data as WireTensor['data'] }
        }
        if (this.batching.has(req.model)) {
          const rows = (Object.values(req.feeds)[0] as WireTensor | undefined)?.dims[0]
          if (typeof rows === 'number' && rows > 0) this.timed(req.model, ms, rows)
        }
        return { outputs, ms, inputs: req.feeds, batch: 1 } satisfies RunResult
      }
      case 'unload': {
        const old = this.sessions.get(req.model)
        this.sessions.delete(req.model)
        this.providers.delete(req.model)
        this.batching.delete(req.model)
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

/**
 * What makes requests batchable together: the same inputs (those the session takes, no more, no fewer) of the
 * same types and the same sizes but for the first dimension, which is the same in every input (the rows), with
 * data of the size their dims say. Undefined where `feeds` cannot join a batch (it runs alone, and fails alone if
 * it is wrong).
 */
function batchKey (names: readonly string[], feeds: Feeds): { key: string, rows: number, bytes: number } | undefined {
  let key = ''
  let rows = -1
  let bytes = 0
  let count = 0
  for (const name in feeds) count++
  if (count !== names.length) return undefined
  for (const name of names) {
    const t = feeds[name]
    if (t === undefined || t.dims.length === 0) return undefined
    const n = t.dims[0] as number
    if (!Number.isInteger(n) || n < 1 || (rows !== -1 && n !== rows)) return undefined
    rows = n
    let size = 1
    for (const d of t.dims) size *= d
    if (size !== t.data.length) return undefined
    bytes += t.data.byteLength
    key += `${name}:${t.dtype}:${t.dims.slice(1).join(',')};`
  }
  return { key, rows, bytes }
}

// onnxruntime's own log goes to stderr in colour; every failure it logs also comes back to us as an exception,
// which the agent logs as JSON. (Dawn, WebGPU's library, still prints its own warnings where there is no GPU.)
ort.env.logLevel = 'fatal'
if (parentPort !== null) new InferenceWorker(parentPort, (workerData as { faults?: Faults } | null)?.faults).serve()
