import type { ViewAnswer, ViewRequest } from '../../protocols/views.ts'
import { BinaryBody } from './server.ts'
import { cameraView } from './routes/cameras.ts'
import type { CameraSources } from './routes/cameras.ts'
import { healthView } from './routes/mesh.ts'
import type { MeshSources } from './routes/mesh.ts'
import { modelView } from './views.ts'
import type { ModelSources } from './routes/models.ts'
import { sensorView } from './routes/sensors.ts'
import type { SensorSources } from './routes/sensors.ts'

export type LocalViewSources = SensorSources & CameraSources & Pick<ModelSources, 'runtime'> & Pick<MeshSources, 'membership' | 'healthHistory'>

/**
 * This box's answer to a member's view (agent/mesh/view-exchange.ts): what its own API gives a viewer for the
 * same read, made by the same functions as the routes.
 */
export function localViews (sources: LocalViewSources): (request: ViewRequest) => Promise<ViewAnswer> {
  return async (request) => {
    const body = await localBody(sources, request)
    return body instanceof BinaryBody ? { jpeg: body.bytes } : { json: body }
  }
}

async function localBody (sources: LocalViewSources, request: ViewRequest): Promise<unknown> {
  switch (request.view) {
    case 'sensors':
    case 'series':
    case 'ingest':
    case 'dead-letters':
      return sensorView(sources, request)
    case 'models':
      return sources.runtime.list().map(modelView)
    case 'cameras':
    case 'latest-jpeg':
    case 'snapshot-jpeg':
      return await cameraView(sources, request)
    case 'health':
      return healthView(sources, request.peer)
  }
}
