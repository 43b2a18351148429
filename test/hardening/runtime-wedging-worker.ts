import { syncBuiltinESMExports } from 'node:module'
import workerThreads, { parentPort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'
import type { WorkerRequest } from '../../runtime/inference-worker.ts'

/**
 * The real inference worker, less a few things: runs of a model whose id starts with `wedge` are never answered
 * (as a run stuck inside onnxruntime), runs of one starting with `slow` are answered 4 s late, and a run of one
 * starting with `crash` kills the thread inside session.run() (as onnxruntime dying would; `crashbatch`: only a
 * run of a batch, more than one row, does). Only a pool built with this file as its `workerUrl` (tests) gets it.
 * The worker takes requests both from its port's `message` events and, between runs, with receiveMessageOnPort:
 * both are filtered.
 */
const port = parentPort as NonNullable<typeof parentPort>
let deliver: (req: WorkerRequest) => void = () => {}
/** Whether the worker gets `req` now (otherwise it is dropped, or delivered late). */
let crash: 'run' | 'batch' | undefined
function passes (req: WorkerRequest): boolean {
  if (req.op === 'run' && req.model.startsWith('crash')) crash = req.model.startsWith('crashbatch') ? 'batch' : 'run'
  if (req.op === 'run' && req.model.startsWith('wedge')) return false
  if (req.op === 'run' && req.model.startsWith('slow')) {
    setTimeout(() => { deliver(req) }, 4_000)
    return false
  }
  return true
}
const on = port.on.bind(port)
port.on = ((event: string, listener: (req: WorkerRequest) => void) => {
  if (event !== 'message') return on(event, listener)
  deliver = listener
  return on(event, (req: WorkerRequest) => { if (passes(req)) listener(req) })
}) as typeof port.on
const receive = workerThreads.receiveMessageOnPort
workerThreads.receiveMessageOnPort = (from: Parameters<typeof receive>[0]) => {
  for (;;) {
    const got = receive(from)
    if (got === undefined || from !== port || passes(got.message as WorkerRequest)) return got
  }
}
syncBuiltinESMExports()
const session = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype
const run = session.run
session.run = function (this: ort.InferenceSession, ...args: Parameters<typeof run>) {
  const rows = (Object.values(args[0])[0] as ort.Tensor | undefined)?.dims[0] ?? 1
  if (crash === 'run' || (crash === 'batch' && rows > 1)) process.exit(70)
  return run.apply(this, args)
} as typeof run
await import('../../runtime/inference-worker.ts')
