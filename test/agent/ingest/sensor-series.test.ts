import t from 'tap'
import { DAY_MS } from '../../../common/schema.ts'
import { HOUR_MS, MINUTE_MS } from '../../../agent/ingest/sensor-store.ts'
import type { IngestBatch } from '../../../agent/ingest/sensor-store.ts'
import { MAX_HOURS_SUMMED, MAX_SERIES_POINTS, SensorSeries } from '../../../agent/ingest/sensor-series.ts'
import { openSensorStore } from '../../helpers/sensor-store.ts'

const T0 = Date.parse('2026-10-30T22:00:00Z')

function batch (readings: IngestBatch['readings']): IngestBatch {
  return { readings, deadLetters: [], received: readings.length, stored: readings.length, rejected: 0, lastSeen: T0 }
}

t.test('a series from the rollups: minutes and hours as stored, days and months (UTC) summed from the hours', async (t) => {
  const { sensors, db } = openSensorStore(t)
  // 22:00 and 22:30 on 30 October, 00:10 on the 31st, 01:00 on 1 November (UTC).
  sensors.commit(batch([
    { sensor: 'k', metric: 'temp', ts: T0, value: 10 },
    { sensor: 'k', metric: 'temp', ts: T0 + 30 * MINUTE_MS, value: 20 },
    { sensor: 'k', metric: 'temp', ts: T0 + 2 * HOUR_MS + 10 * MINUTE_MS, value: 4 },
    { sensor: 'k', metric: 'temp', ts: T0 + 27 * HOUR_MS, value: 7 },
    { sensor: 'other', metric: 'temp', ts: T0, value: 99 }
  ]))
  const series = new SensorSeries({ db, now: () => T0 + 28 * HOUR_MS })
  const ask = (res: 'minute' | 'hour' | 'day' | 'month', since?: number, until?: number) => series.series({ sensor: 'k', metric: 'temp', res, since, until })
  t.same(ask('minute'), [{ start: T0 + 27 * HOUR_MS, count: 1, min: 7, max: 7, mean: 7, last: 7 }], 'minutes of the last day by default')
  t.same(ask('minute', T0).map((p) => p.start), [T0, T0 + 30 * MINUTE_MS, T0 + 2 * HOUR_MS + 10 * MINUTE_MS, T0 + 27 * HOUR_MS], 'since: from then')
  t.same(ask('hour'), [
    { start: T0, count: 2, min: 10, max: 20, mean: 15, last: 20 },
    { start: T0 + 2 * HOUR_MS, count: 1, min: 4, max: 4, mean: 4, last: 4 },
    { start: T0 + 27 * HOUR_MS, count: 1, min: 7, max: 7, mean: 7, last: 7 }
  ])
  t.same(ask('hour', undefined, T0 + HOUR_MS).map((p) => p.start), [T0], 'until: periods that start by then')
  t.same(ask('day'), [
    { start: Date.parse('2026-10-30T00:00:00Z'), count: 2, min: 10, max: 20, mean: 15, last: 20 },
    { start: Date.parse('2026-10-31T00:00:00Z'), count: 1, min: 4, max: 4, mean: 4, last: 4 },
    { start: Date.parse('2026-11-01T00:00:00Z'), count: 1, min: 7, max: 7, mean: 7, last: 7 }
  ])
  t.same(ask('month'), [
    { start: Date.parse('2026-10-01T00:00:00Z'), count: 3, min: 4, max: 20, mean: 34 / 3, last: 4 },
    { start: Date.parse('2026-11-01T00:00:00Z'), count: 1, min: 7, max: 7, mean: 7, last: 7 }
  ], 'the last of a month is the value measured last in it')
  t.same(ask('day', Date.parse('2026-10-30T12:00:00Z')).map((p) => new Date(p.start).toISOString()), ['2026-10-31T00:00:00.000Z', '2026-11-01T00:00:00.000Z'],
    'a day that starts before since is not in the range')
  t.same(series.series({ sensor: 'k', metric: 'nothing', res: 'hour' }), [], 'an unknown metric: no points')
})

t.test('at most MAX_SERIES_POINTS points, the newest; days from at most MAX_HOURS_SUMMED hours, a cut day left out', async (t) => {
  const { sensors, db } = openSensorStore(t)
  const start = Date.parse('2026-01-01T00:00:00Z')
  const readings = Array.from({ length: MAX_HOURS_SUMMED + 12 }, (_, i) => ({ sensor: 's', metric: 'm', ts: start + i * HOUR_MS, value: i }))
  for (let i = 0; i < readings.length; i += 5_000) sensors.commit(batch(readings.slice(i, i + 5_000)))
  const end = start + (MAX_HOURS_SUMMED + 12) * HOUR_MS
  const series = new SensorSeries({ db, now: () => end })
  const hours = series.series({ sensor: 's', metric: 'm', res: 'hour', since: 0 })
  t.equal(hours.length, MAX_SERIES_POINTS)
  t.equal(hours.at(-1)?.last, readings.length - 1, 'the newest')
  const days = series.series({ sensor: 's', metric: 'm', res: 'day', since: 0 })
  t.equal(days.length, MAX_SERIES_POINTS, `${days.length} days`)
  t.same(days.map((d) => d.count).filter((c) => c !== 24), [12], 'whole days only, but the one under way')
  t.equal(days[0]?.start, start + DAY_MS, 'the oldest day read is cut, and left out')
})
