import type { Logger } from '../../common/logger.ts'
import type { OperatorRole } from '../../protocols/identity.ts'
import type { ResolvedConfig } from '../config/config.ts'
import { API_FAILED_METRIC, API_REFUSED_METRIC, ControlApi } from './server.ts'
import type { LiveUpgrades } from './server.ts'
import { pageRoutes } from './routes/page.ts'
import type { ListenerAddresses, PageSources } from './routes/page.ts'
import { cameraRoutes } from './routes/cameras.ts'
import type { CameraSources } from './routes/cameras.ts'
import { coordinationRoutes } from './routes/coordination.ts'
import type { CoordinationSources } from './routes/coordination.ts'
import { identityRoutes } from './routes/identity.ts'
import type { IdentitySources } from './routes/identity.ts'
import { meshRoutes } from './routes/mesh.ts'
import type { MeshSources } from './routes/mesh.ts'
import { modelRoutes } from './routes/models.ts'
import type { ModelSources } from './routes/models.ts'
import { routeTable } from './routes/route.ts'
import type { Routes } from './routes/route.ts'
import { sensorRoutes } from './routes/sensors.ts'
import type { SensorSources } from './routes/sensors.ts'
import { systemRoutes } from './routes/system.ts'
import type { SystemSources } from './routes/system.ts'

/** Everything the control API reads from and acts on: each routes module takes its share of it. */
export type ApiSources = SystemSources & MeshSources & CoordinationSources & SensorSources & ModelSources & CameraSources & IdentitySources & PageSources

/** The whole route table: one part per area (routes/*.ts), each route with the role it needs over HTTPS. */
export function apiRoutes (sources: ApiSources): Routes {
  return {
    ...systemRoutes(sources),
    ...meshRoutes(sources),
    ...coordinationRoutes(sources),
    ...sensorRoutes(sources),
    ...modelRoutes(sources),
    ...cameraRoutes(sources),
    ...identityRoutes(sources),
    ...pageRoutes(sources)
  }
}

/**
 * The agent's control API: the routes served on the Unix socket and, when `api.tcp` is set, over HTTPS to
 * operators with a token whose role the route allows; the same on 127.0.0.1 over plain HTTP when `ui.http` is
 * set. Refusals and failures are counted by reason.
 */
export function controlApi ({ config, ui, routes, authenticate, log, counters, live, listening }: {
  config: ResolvedConfig['api']
  ui: ResolvedConfig['ui']
  routes: Routes
  /** The live feed, which takes the WebSocket upgrades of both TCP listeners. */
  live?: LiveUpgrades
  listening?: ListenerAddresses
  /** Who a token names (identity/operators.ts). */
  authenticate: (token: string) => { username: string, role: OperatorRole } | undefined
  log: Logger
  counters: { inc: (name: string, labels: Record<string, string>) => void }
}): ControlApi {
  const { handlers, access, queryRoutes } = routeTable(routes)
  return new ControlApi({
    socketPath: config.socketPath,
    queryRoutes,
    log,
    timeouts: { headersMs: config.headersTimeoutMs, requestMs: config.requestTimeoutMs },
    onRefused: (reason) => { counters.inc(API_REFUSED_METRIC, { reason }) },
    onFailed: (reason) => { counters.inc(API_FAILED_METRIC, { reason }) },
    routes: handlers,
    remote: config.tcp === undefined ? undefined : { ...config.tcp, authenticate, access },
    loopback: ui.http === undefined ? undefined : { port: ui.http.port, maxConnections: config.tcp?.maxConnections ?? 256, authenticate, access },
    live,
    listening
  })
}
