import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../../../common/logger.ts'
import { MemberBus } from '../../../agent/membership/bus.ts'
import { HEALTH_TABLES, HISTORY_MS, HealthHistory, MAX_HEALTH_ROWS, SAMPLE_MS, healthSampleView } from '../../../agent/store/health-history.ts'
import { Store } from '../../../agent/store/store.ts'
import { sampleBeacon } from '../../helpers/beacon.ts'

const log = createLogger('silent')
const T0 = Date.UTC(2026, 10, 30, 10, 0, 0)

function history (t: { testdir: () => string, teardown: (fn: () => void) => void }, path = join(t.testdir(), 'noodle.db')) {
  const store = Store.open({ path, log })
  const bus = new MemberBus()
  let now = T0
  const h = new HealthHistory({ store, bus, selfId: 'self', maxMembers: 4, now: () => now })
  h.start()
  t.teardown(() => { h.stop(); store.close() })
  return { store, bus, h, path, at: (ms: number) => { now = ms } }
}

const beacon = (cpuPct: number, tempC: number | null = 40) => sampleBeacon({ cpuPct, load1: 0.5, memUsedBytes: 100, memTotalBytes: 400, diskFreeBytes: 9, tempC })

t.test('a sample a minute per member: the last its beacons gave in it, the minute under way included', async (t) => {
  const { bus, h, at, store } = history(t)
  bus.emit('beacon', 'peer-a', beacon(10))
  at(T0 + 20_000)
  bus.emit('beacon', 'peer-a', beacon(20))
  bus.emit('own-beacon', beacon(5, null))
  at(T0 + SAMPLE_MS + 1_000)
  bus.emit('beacon', 'peer-a', beacon(30))
  const rows = () => (store.database.prepare('SELECT count(*) AS n FROM health_samples').get() as { n: number }).n
  t.equal(rows(), 0, 'nothing written yet: a flush a minute')
  t.same(h.samples('peer-a').map(healthSampleView), [
    { at: new Date(T0).toISOString(), cpuPct: 20, load1: 0.5, memUsedBytes: 100, memTotalBytes: 400, diskFreeBytes: 9, tempC: 40 },
    { at: new Date(T0 + SAMPLE_MS).toISOString(), cpuPct: 30, load1: 0.5, memUsedBytes: 100, memTotalBytes: 400, diskFreeBytes: 9, tempC: 40 }
  ], 'oldest first, read before anything is written')
  h.flush()
  t.equal(rows(), 2, 'the finished minutes written (peer-a\'s first, ours), in one transaction')
  t.same(h.samples('self').map((s) => [s.at, s.cpuPct, s.tempC]), [[T0, 5, null]], 'our own beacons too, with no thermal zone')
  t.same(h.samples('peer-a').map((s) => s.cpuPct), [20, 30], 'stored and waiting, merged')
  t.same(h.samples('peer-b'), [], 'a member never heard: nothing')
})

t.test('a day is kept, the minute a restart wrote is replaced, and the store prunes past a day and past the row cap', async (t) => {
  const path = join(t.testdir(), 'noodle.db')
  {
    const { bus, h } = history(t, path)
    bus.emit('beacon', 'peer-a', beacon(10))
    h.stop()
  }
  const { bus, h, at, store } = history(t, path)
  t.same(h.samples('peer-a').map((s) => s.cpuPct), [10], 'the minute under way at stop was written')
  bus.emit('beacon', 'peer-a', beacon(11))
  h.flush(Infinity)
  t.same(h.samples('peer-a').map((s) => s.cpuPct), [11], 'the same minute after a restart: one row, the later figures')
  at(T0 + HISTORY_MS + SAMPLE_MS)
  t.same(h.samples('peer-a'), [], 'older than a day: not shown')
  t.match(await store.prune(T0 + HISTORY_MS + SAMPLE_MS), { health_samples: 1 }, 'and pruned')
  t.same(HEALTH_TABLES.retention, [{ table: 'health_samples', time: 'at', key: 'id', maxAgeMs: HISTORY_MS, maxRows: MAX_HEALTH_ROWS }])
})

t.test('samples waiting in memory are bounded by the members the table admits', async (t) => {
  const { bus, h, at } = history(t)
  for (let minute = 0; minute < 10; minute++) {
    at(T0 + minute * SAMPLE_MS)
    for (let i = 0; i < 50; i++) bus.emit('beacon', `peer-${i}`, beacon(minute))
  }
  const waiting = h as unknown as { current: Map<string, unknown>, due: unknown[] }
  t.equal(waiting.current.size, 4, 'the minute under way: maxMembers samples at most')
  t.ok(waiting.due.length <= 16, `finished minutes waiting: ${waiting.due.length}, at most 4 × maxMembers`)
})
