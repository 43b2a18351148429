import type { Database as DB } from 'better-sqlite3'
import { DAY_MS } from '../../common/schema.ts'
import { HOUR_MS, MINUTE_MS } from './sensor-store.ts'
import { MAX_SERIES_POINTS, SERIES_RESOLUTIONS } from '../../protocols/views.ts'

/** The resolutions a series is asked at: minute and hour are the store's rollups; day and month are summed from hours. */
export type SeriesResolution = typeof SERIES_RESOLUTIONS[number]
export { MAX_SERIES_POINTS, SERIES_RESOLUTIONS }
/**
 * Hour rollups a day or month series is summed from at most (the newest of its range, about four years): hour
 * rollups are kept up to 100 years (`mqtt.retention.hourDays`), and one request must not read them all.
 */
export const MAX_HOURS_SUMMED = MAX_SERIES_POINTS * 24
/** The range a series covers when `since` is not given: a day of minutes, a week of hours, 90 days, two years. */
export const DEFAULT_SPAN_MS: Readonly<Record<SeriesResolution, number>> = {
  minute: DAY_MS,
  hour: 7 * DAY_MS,
  day: 90 * DAY_MS,
  month: 731 * DAY_MS
}

/** One point of a series: the readings of its minute, hour, day or month (UTC). */
export interface SeriesPoint {
  /** The start of its period (ms since the epoch). */
  start: number
  count: number
  min: number
  max: number
  mean: number
  /** The value measured last in the period. */
  last: number
}

export interface SeriesQuery {
  sensor: string
  metric: string
  res: SeriesResolution
  /** The periods that start within [since, until] (ms since the epoch); by default DEFAULT_SPAN_MS up to now. */
  since?: number
  until?: number
}

interface RollupRow { start: number, count: number, min: number, max: number, sum: number, last: number, last_ts: number }

/** Where a period of `res` that holds `at` starts: UTC days and months. */
function periodStart (res: 'day' | 'month', at: number): number {
  if (res === 'day') return Math.floor(at / DAY_MS) * DAY_MS
  const d = new Date(at)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
}

/**
 * A sensor metric's readings over time, read from the sensor store's rollups (SENSOR_TABLES): minute and hour as
 * stored, day and month summed from the hours when asked. Oldest first, at most MAX_SERIES_POINTS (the newest of
 * the range). Reads only: the sensor store writes and prunes the rollups.
 */
export class SensorSeries {
  private readonly db: DB
  private readonly now: () => number
  private prepared: ReturnType<SensorSeries['prepare']> | undefined

  constructor (components: { db: DB, now?: () => number }) {
    this.db = components.db
    this.now = components.now ?? Date.now
  }

  private get statements (): ReturnType<SensorSeries['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    // Newest first through the rollups' primary key (period, sensor, metric, start), so the limit keeps the newest.
    return this.db.prepare<[number, string, string, number, number, number], RollupRow>(`
      SELECT start, count, min_value AS min, max_value AS max, sum_value AS sum, last, last_ts FROM rollups
      WHERE period = ? AND sensor = ? AND metric = ? AND start >= ? AND start <= ? ORDER BY start DESC LIMIT ?`)
  }

  series ({ sensor, metric, res, since, until }: SeriesQuery): SeriesPoint[] {
    const end = until ?? this.now()
    const begin = since ?? end - DEFAULT_SPAN_MS[res]
    if (res === 'minute' || res === 'hour') {
      return this.statements.all(res === 'minute' ? MINUTE_MS : HOUR_MS, sensor, metric, begin, end, MAX_SERIES_POINTS)
        .reverse().map(({ sum, last_ts: _lastTs, ...r }) => ({ ...r, mean: sum / r.count }))
    }
    const hours = this.statements.all(HOUR_MS, sensor, metric, begin, end, MAX_HOURS_SUMMED)
    // Past the hours summed at most, the oldest period read may lack its first hours: it is left out.
    const oldest = hours.at(-1)
    const cut = hours.length === MAX_HOURS_SUMMED && oldest !== undefined ? periodStart(res, oldest.start) : undefined
    const periods = new Map<number, RollupRow>()
    for (const h of hours) {
      // A period that starts before `since` is not one of the range's.
      const start = periodStart(res, h.start)
      if (start < begin || start === cut) continue
      const p = periods.get(start)
      if (p === undefined) {
        periods.set(start, { ...h, start })
        continue
      }
      p.count += h.count
      p.sum += h.sum
      if (h.min < p.min) p.min = h.min
      if (h.max > p.max) p.max = h.max
      if (h.last_ts > p.last_ts) { p.last = h.last; p.last_ts = h.last_ts }
    }
    return [...periods.values()].sort((a, b) => a.start - b.start).slice(-MAX_SERIES_POINTS)
      .map(({ sum, last_ts: _lastTs, ...r }) => ({ ...r, mean: sum / r.count }))
  }
}
