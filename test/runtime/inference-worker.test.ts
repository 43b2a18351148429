import { setTimeout as sleep } from 'node:timers/promises'
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads'
import t from 'tap'
import { InferenceWorker } from '../../runtime/inference-worker.ts'
import type { WorkerRequest } from '../../runtime/inference-worker.ts'

t.test('an inference worker answers from serve() on: its constructor only stores', async (t) => {
  const { port1, port2 } = new MessageChannel()
  t.teardown(() => { port1.close() })
  const worker = new InferenceWorker(port1)
  port2.postMessage({ id: 1, op: 'run', model: 'absent', feeds: {} } satisfies WorkerRequest)
  await sleep(50)
  t.equal(receiveMessageOnPort(port2), undefined, 'nothing answered before serve()')
  worker.serve()
  const reply = await new Promise((resolve) => { port2.once('message', resolve) })
  t.same(reply, { id: 1, ok: false, error: 'model absent is not loaded' }, 'the request sent before is answered')
})
