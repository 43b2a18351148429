import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { ModelRegistry } from '../../runtime/registry.ts'
import type { ModelRecord } from '../../runtime/registry.ts'

const spec = [{ name: 'x', dtype: 'float32', shape: [1, 3, 8, 8] }]
const model = (id: string, createdAt: number): Omit<ModelRecord, 'providers'> => ({
  id, name: `${id}.onnx`, file: `/models/${id}`, optimizedFile: null, sizeBytes: 100, irVersion: 8, opset: 17, inputs: spec, outputs: spec,
  createdAt, origin: 'compiled', fileMtimeMs: 1, optimizedSize: null, optimizedMtimeMs: null
})

function registry (t: { testdir: () => string, teardown: (fn: () => void) => void }): ModelRegistry {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log: createLogger('silent') })
  t.teardown(() => { store.close() })
  return new ModelRegistry({ db: store.database })
}

t.test('lists every model, newest first, each with its benchmarks fastest first, values exact', async (t) => {
  const models = registry(t)
  models.put(model('a', 1), [{ name: 'cpu', threads: 4, runs: 20, p50Ms: 0.1 + 0.2, p99Ms: 1 / 3 }, { name: 'cuda', threads: 1, runs: 20, p50Ms: 0.05, p99Ms: 0.5 }])
  models.put(model('b', 2), [])
  models.put(model('c', 2), [{ name: 'cpu', threads: 1, runs: 3, p50Ms: 7, p99Ms: 9 }])
  t.same(models.list().map((m) => [m.id, m.providers.map((p) => p.name)]), [['b', []], ['c', ['cpu']], ['a', ['cuda', 'cpu']]])
  t.same(models.get('a')?.providers, [
    { name: 'cuda', threads: 1, runs: 20, p50Ms: 0.05, p99Ms: 0.5 },
    { name: 'cpu', threads: 4, runs: 20, p50Ms: 0.1 + 0.2, p99Ms: 1 / 3 }
  ], 'doubles come back bit for bit')
  t.same(models.get('b'), { ...model('b', 2), providers: [] })
  t.equal(models.get('nope'), undefined)
})

t.test('benchmarks, stamps, keep and remove change what is listed', async (t) => {
  const models = registry(t)
  models.put({ ...model('a', 1), origin: 'standby' }, [])
  models.recordBenchmark('a', { name: 'cpu', threads: 2, runs: 5, p50Ms: 3, p99Ms: 4 }, 10)
  models.recordBenchmark('a', { name: 'cpu', threads: 3, runs: 6, p50Ms: 2, p99Ms: 3 }, 11)
  models.stamp('a', { fileMtimeMs: 9, optimizedSize: 8, optimizedMtimeMs: 7 })
  models.put({ ...model('a', 1), origin: 'standby' }, [])
  t.match(models.get('a'), { origin: 'standby', fileMtimeMs: 1, providers: [{ name: 'cpu', threads: 3, runs: 6, p50Ms: 2 }] }, 'a standby put keeps the origin; a benchmark is replaced')
  models.keep('a', 'fetched')
  t.equal(models.get('a')?.origin, 'fetched')
  models.keep('a', 'compiled')
  t.equal(models.get('a')?.origin, 'fetched', 'only a standby copy changes origin')
  models.remove('a')
  t.same(models.list(), [])
})
