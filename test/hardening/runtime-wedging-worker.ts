import { parentPort } from 'node:worker_threads'
import type { WorkerRequest } from '../../runtime/inference-worker.ts'

/**
 * The real inference worker, less one thing: runs of a model whose id starts with `wedge` are never answered
 * (as a run stuck inside onnxruntime), and runs of one starting with `slow` are answered 4 s late. Only a
 * pool built with this file as its `workerUrl` (tests) gets it.
 */
const port = parentPort as NonNullable<typeof parentPort>
const on = port.on.bind(port)
port.on = ((event: string, listener: (req: WorkerRequest) => void) => on(event, event !== 'message'
  ? listener
  : (req: WorkerRequest) => {
      if (req.op === 'run' && req.model.startsWith('wedge')) return
      if (req.op === 'run' && req.model.startsWith('slow')) setTimeout(() => { listener(req) }, 4_000)
      else listener(req)
    })) as typeof port.on
await import('../../runtime/inference-worker.ts')
