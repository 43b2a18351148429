import { basename } from 'node:path'
import { BenchRequestSchema, CompileRequestSchema, FetchRequestSchema } from '../../../protocols/models.ts'
import type { ModelRecord } from '../../../runtime/registry.ts'
import type { BenchResult, CompileResult } from '../../../runtime/model-runtime.ts'
import { withImportedModel } from '../model-import.ts'
import { modelView } from '../views.ts'
import { operatorRoute, readBody } from './route.ts'
import { nodeRoute } from './remote.ts'
import type { RemoteViews } from './remote.ts'
import type { Routes } from './route.ts'

export interface ModelSources {
  selfId: string
  /** Another member's models (`?node=`). */
  views: RemoteViews
  runtime: {
    list: () => ModelRecord[]
    compile: (file: string, options: { name: string, shapes?: Readonly<Record<string, readonly number[]>> }) => Promise<CompileResult>
    bench: (id: string, options: { runs?: number, shape?: number[], shapes?: Readonly<Record<string, readonly number[]>> }) => Promise<BenchResult>
  }
  /** Fetches a model from a member that has it. */
  exchange: { fetch: (id: string) => Promise<CompileResult> }
  /** Where remote callers may compile from (`models.importDir`), the size cap, and where private copies are made. */
  imports: { importDir: string | undefined, maxModelBytes: number, stagingDir: string }
}

/** The models registered here: listed, compiled from a file, fetched from a member, benchmarked. */
export function modelRoutes (sources: ModelSources): Routes {
  const { runtime, exchange, imports } = sources
  return {
    // With their latency per provider; another member's with ?node=.
    'GET /api/v1/models': nodeRoute(sources, () => ({ v: 1, view: 'models' }), () => runtime.list().map(modelView)),
    'POST /api/v1/models/compile': operatorRoute(async (req, caller) => {
      const { file, shapes } = await readBody(req, CompileRequestSchema)
      const rules = { remote: !caller.local, importDir: imports.importDir, maxBytes: imports.maxModelBytes }
      // Compiled from a private copy read through the checked descriptor: a file swapped after the check is not read.
      return await withImportedModel(file, rules, imports.stagingDir, async (staged) => await runtime.compile(staged, { name: basename(file), shapes }))
    }),
    'POST /api/v1/models/fetch': operatorRoute(async (req) => {
      const { id } = await readBody(req, FetchRequestSchema)
      return await exchange.fetch(id)
    }),
    'POST /api/v1/models/bench': operatorRoute(async (req) => {
      const { id, runs, shape, shapes } = await readBody(req, BenchRequestSchema)
      return await runtime.bench(id, { runs, shape, shapes })
    })
  }
}
