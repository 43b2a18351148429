/**
 * bench/inference's hand-off floor: a worker that does nothing but `session.run()` behind `postMessage`, buffers
 * transferred both ways, spinning 0.1 ms for the next request after each answer as the pool's worker does. What a
 * caller one run at a time loses against it is the thread hop itself; what it gains over the runtime is the
 * runtime's own code (queue, batching, watchdog, ModelRuntime).
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'

interface EchoRequest { data: Float32Array, dims: number[] }

const port = parentPort as NonNullable<typeof parentPort>
const { file, input, threads } = workerData as { file: string, input: string, threads: number }
const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' })
const queue: EchoRequest[] = []
let pumping = false

async function pump (): Promise<void> {
  pumping = true
  for (let req = queue.shift(); req !== undefined; req = queue.shift()) {
    await session.run({ [input]: new ort.Tensor('float32', req.data, req.dims) })
    port.postMessage({ data: req.data }, [req.data.buffer as ArrayBuffer])
    const until = performance.now() + 0.1
    while (queue.length === 0 && performance.now() < until) {
      const next = receiveMessageOnPort(port)
      if (next !== undefined) queue.push(next.message as EchoRequest)
    }
  }
  pumping = false
}

port.on('message', (req: EchoRequest) => {
  queue.push(req)
  if (!pumping) void pump()
})
port.postMessage('ready')
