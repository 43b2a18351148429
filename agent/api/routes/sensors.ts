import { ForgetSensorRequestSchema } from '../../../protocols/sensor-payload.ts'
import type { IngestStatus } from '../../ingest/ingest.ts'
import type { EmbeddedBrokerStats } from '../../ingest/mqtt-broker.ts'
import type { DeadLetterView, IngestTotals, SensorView } from '../../ingest/sensor-store.ts'
import { sensorReadingView } from '../views.ts'
import { operatorRoute, readBody, viewerRoute } from './route.ts'
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
  /** The MQTT parts this node runs (each null where it is not configured). */
  mqtt: {
    readonly ingest: { status: () => IngestStatus } | null
    readonly session: { readonly broker: string } | null
    readonly broker: { stats: () => EmbeddedBrokerStats } | null
  }
}

export function ingestView ({ sensors, mqtt }: SensorSources): IngestView {
  const embeddedBroker = mqtt.broker?.stats() ?? null
  if (mqtt.ingest !== null) return { ...mqtt.ingest.status(), embeddedBroker }
  // Nothing is ingested now, but totals from earlier runs are still in the store.
  return { ...sensors.totals(), deadLetter: sensors.deadLetterCount(), connected: false, broker: mqtt.session?.broker ?? null, embeddedBroker }
}

/** What MQTT brought in: the sensors' latest readings, the ingest's figures, and what was refused. */
export function sensorRoutes (sources: SensorSources): Routes {
  const { sensors } = sources
  return {
    'GET /api/v1/sensors': viewerRoute(() => sensors.sensors().map(sensorReadingView)),
    'POST /api/v1/sensors/forget': operatorRoute(async (req) => {
      const { sensor, metric } = await readBody(req, ForgetSensorRequestSchema)
      return { forgotten: sensors.forget(sensor, metric) }
    }),
    'GET /api/v1/ingest': viewerRoute(() => ingestView(sources)),
    'GET /api/v1/ingest/dead-letters': viewerRoute(() => sensors.deadLetterViews())
  }
}
