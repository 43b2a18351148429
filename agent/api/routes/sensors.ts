import { ForgetSensorRequestSchema } from '../../../protocols/sensor-payload.ts'
import type { IngestStatus } from '../../ingest/ingest.ts'
import type { EmbeddedBrokerStats } from '../../ingest/mqtt-broker.ts'
import type { DeadLetterView, IngestTotals, SensorView } from '../../ingest/sensor-store.ts'
import type { SeriesPoint, SeriesQuery } from '../../ingest/sensor-series.ts'
import { SERIES_RESOLUTIONS } from '../../../protocols/views.ts'
import type { ViewBody, ViewRequest } from '../../../protocols/views.ts'
import { peerIdText } from '../../../common/text.ts'
import { z } from 'zod'
import { sensorReadingView } from '../views.ts'
import { queryTime } from './cameras.ts'
import { answerBody, nodeRoute } from './remote.ts'
import type { RemoteViews } from './remote.ts'
import { operatorRoute, parseQuery, readBody } from './route.ts'
import type { Routes } from './route.ts'

/** What `GET /api/v1/ingest` reports: the ingest's figures, and the embedded broker's where it runs. */
export type IngestView = IngestStatus & { embeddedBroker: EmbeddedBrokerStats | null }

export interface SensorSources {
  sensors: {
    sensors: () => SensorView[]
    forget: (sensor: string, metric?: string) => number
    deadLetterViews: () => DeadLetterView[]
    totals: () => IngestTotals
    deadLetterCount: () => number
  }
  /** Series of a sensor metric from the rollups. */
  series: { series: (query: SeriesQuery) => SeriesPoint[] }
  selfId: string
  views: RemoteViews
  /** The MQTT parts this node runs (each null where it is not configured). */
  mqtt: {
    readonly ingest: { status: () => IngestStatus } | null
    readonly session: { readonly broker: string } | null
    readonly broker: { stats: () => EmbeddedBrokerStats } | null
  }
}

export function ingestView ({ sensors, mqtt }: Pick<SensorSources, 'sensors' | 'mqtt'>): IngestView {
  const embeddedBroker = mqtt.broker?.stats() ?? null
  if (mqtt.ingest !== null) return { ...mqtt.ingest.status(), embeddedBroker }
  // Nothing is ingested now, but totals from earlier runs are still in the store.
  return { ...sensors.totals(), deadLetter: sensors.deadLetterCount(), connected: false, broker: mqtt.session?.broker ?? null, embeddedBroker }
}

/** `GET /api/v1/sensors/series`' query parameters: a sensor metric, its resolution, the range; the member's. */
export const SeriesQuerySchema = z.strictObject({
  sensor: z.string().min(1).max(256),
  metric: z.string().min(1).max(256),
  res: z.enum(SERIES_RESOLUTIONS),
  since: queryTime.pipe(z.number().min(0, 'must be 1970 or later')).optional(),
  until: queryTime.pipe(z.number().min(0, 'must be 1970 or later')).optional(),
  node: peerIdText.optional()
})

/** A series as the API gives it (`GET /api/v1/sensors/series`): points oldest first. */
export type SeriesView = ViewBody<'series'>

export function seriesView (series: SensorSources['series'], { sensor, metric, res, since, until }: Extract<ViewRequest, { view: 'series' }>): SeriesView {
  const points = series.series({ sensor, metric, res, since, until })
  return { sensor, metric, res, points: points.map(({ start, ...p }) => ({ at: new Date(start).toISOString(), ...p })) }
}

/** This box's answer to a view of its sensors, ingest or dead letter. */
export function sensorView (sources: SensorSources, request: Extract<ViewRequest, { view: 'sensors' | 'series' | 'ingest' | 'dead-letters' }>): unknown {
  switch (request.view) {
    case 'sensors': return sources.sensors.sensors().map(sensorReadingView)
    case 'series': return seriesView(sources.series, request)
    case 'ingest': return ingestView(sources)
    case 'dead-letters': return sources.sensors.deadLetterViews()
  }
}

/** What MQTT brought in: the sensors' latest readings and their series, the ingest's figures, and what was refused; any member's (`?node=`). */
export function sensorRoutes (sources: SensorSources): Routes {
  const { sensors } = sources
  const view = <V extends 'sensors' | 'ingest' | 'dead-letters'> (name: V) => nodeRoute(sources, () => ({ v: 1, view: name }), (request) => sensorView(sources, request as Extract<ViewRequest, { view: V }>))
  return {
    'GET /api/v1/sensors': view('sensors'),
    'GET /api/v1/sensors/series': {
      access: 'viewer',
      takesQuery: true,
      handle: async (_req, _caller, query) => {
        const { node, ...range } = parseQuery(SeriesQuerySchema, query ?? new URLSearchParams())
        const request = { v: 1 as const, view: 'series' as const, ...range }
        if (node === undefined || node === sources.selfId) return seriesView(sources.series, request)
        return answerBody(await sources.views.ask(node, request))
      }
    },
    'POST /api/v1/sensors/forget': operatorRoute(async (req) => {
      const { sensor, metric } = await readBody(req, ForgetSensorRequestSchema)
      return { forgotten: sensors.forget(sensor, metric) }
    }),
    'GET /api/v1/ingest': view('ingest'),
    'GET /api/v1/ingest/dead-letters': view('dead-letters')
  }
}
