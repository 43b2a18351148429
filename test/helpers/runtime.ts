import { join } from 'node:path'
import { createLogger } from '../../common/logger.ts'
import { Store } from '../../agent/store/store.ts'
import { ModelRuntime } from '../../runtime/model-runtime.ts'
import { InferencePool } from '../../runtime/pool.ts'
import { ModelRegistry } from '../../runtime/registry.ts'

/** A model runtime of its own for a test (store, pool of 2 cores, models dir in the test's folder), stopped after it. */
export function testRuntime (t: { testdir: () => string, teardown: (fn: () => Promise<void>) => void }): { dir: string, runtime: ModelRuntime } {
  const dir = t.testdir()
  const log = createLogger('silent')
  const store = Store.open({ path: join(dir, 'noodle.db'), log })
  const pool = new InferencePool({ log, cpus: 2 })
  pool.start()
  const runtime = new ModelRuntime({ registry: new ModelRegistry({ db: store.database }), pool, modelsDir: join(dir, 'models'), log })
  runtime.start()
  t.teardown(async () => { await pool.stop(); store.close() })
  return { dir, runtime }
}
