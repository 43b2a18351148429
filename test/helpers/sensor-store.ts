import { join } from 'node:path'
import { createLogger } from '../../common/logger.ts'
import { HOUR_MS, SensorStore } from '../../agent/ingest/sensor-store.ts'
import { Store } from '../../agent/store/store.ts'

/** Short retention for the tests: raw readings an hour, minute rollups two, hour rollups two days. */
export const RETENTION = { rawMs: HOUR_MS, minuteMs: 2 * HOUR_MS, hourMs: 48 * HOUR_MS }

/** A sensor store on a real SQLite store in the test's folder, closed with the test. */
export function openSensorStore (t: { testdir: () => string, teardown: (fn: () => void) => void }, maxSensors?: number) {
  const store = Store.open({ path: join(t.testdir(), 'noodle.db'), log: createLogger('silent') })
  t.teardown(() => { store.close() })
  return { store, db: store.database, sensors: new SensorStore({ db: store.database, log: createLogger('silent'), retention: RETENTION, maxSensors }) }
}
