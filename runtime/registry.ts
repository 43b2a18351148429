import type { Database as DB } from 'better-sqlite3'
import type { TensorSpec } from './tensors.ts'

/** A measured latency of one model on one execution provider, with `threads` intra-op threads. */
export interface ProviderBenchmark {
  name: string
  threads: number
  runs: number
  p50Ms: number
  p99Ms: number
}

/**
 * Where a model came from: an operator compiled it, an operator fetched it from a peer, or the standby fetched it
 * for work that may move here. Only standby copies are ever collected.
 */
export type ModelOrigin = 'compiled' | 'fetched' | 'standby'

export interface ModelRecord {
  id: string
  name: string
  file: string
  optimizedFile: string | null
  sizeBytes: number
  irVersion: number
  opset: number
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  createdAt: number
  origin: ModelOrigin
  /** The files' modification times (and the optimized one's size) when registered; null for models of older versions. */
  fileMtimeMs: number | null
  optimizedSize: number | null
  optimizedMtimeMs: number | null
  /** Fastest first. */
  providers: ProviderBenchmark[]
}

interface ModelRow {
  id: string
  name: string
  file: string
  optimized_file: string | null
  size_bytes: number
  ir_version: number
  opset: number
  inputs: string
  outputs: string
  created_at: number
  origin: ModelOrigin
  file_mtime_ms: number | null
  optimized_size: number | null
  optimized_mtime_ms: number | null
}

/** The models registered on this node and their measured latencies (tables of migrations 4, 6 and 9). */
export class ModelRegistry {
  private readonly db: DB

  constructor (components: { db: DB }) {
    this.db = components.db
  }

  put (m: Omit<ModelRecord, 'providers'>, providers: ProviderBenchmark[]): void {
    this.db.transaction(() => {
      this.db.prepare(`
        INSERT INTO models (id, name, file, optimized_file, size_bytes, ir_version, opset, inputs, outputs, created_at,
          origin, file_mtime_ms, optimized_size, optimized_mtime_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, optimized_file = excluded.optimized_file,
          file_mtime_ms = excluded.file_mtime_ms, optimized_size = excluded.optimized_size, optimized_mtime_ms = excluded.optimized_mtime_ms,
          origin = CASE WHEN excluded.origin = 'standby' THEN models.origin ELSE excluded.origin END`)
        .run(m.id, m.name, m.file, m.optimizedFile, m.sizeBytes, m.irVersion, m.opset, JSON.stringify(m.inputs), JSON.stringify(m.outputs), m.createdAt,
          m.origin, m.fileMtimeMs, m.optimizedSize, m.optimizedMtimeMs)
      for (const p of providers) this.recordBenchmark(m.id, p)
    })()
  }

  recordBenchmark (id: string, p: ProviderBenchmark, at = Date.now()): void {
    this.db.prepare(`
      INSERT INTO model_benchmarks (model_id, provider, threads, runs, p50_ms, p99_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT DO UPDATE SET threads = excluded.threads, runs = excluded.runs, p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms, at = excluded.at`)
      .run(id, p.name, p.threads, p.runs, p.p50Ms, p.p99Ms, at)
  }

  /** An operator asked for a model the standby had fetched: it is kept from now on. */
  keep (id: string, origin: Exclude<ModelOrigin, 'standby'>): void {
    this.db.prepare("UPDATE models SET origin = ? WHERE id = ? AND origin = 'standby'").run(origin, id)
  }

  /** Forgets a model (its benchmarks go with it). */
  remove (id: string): void {
    this.db.prepare('DELETE FROM models WHERE id = ?').run(id)
  }

  /** The files' stamps, taken again (a model of an older version, verified by its hash). */
  stamp (id: string, s: Pick<ModelRecord, 'fileMtimeMs' | 'optimizedSize' | 'optimizedMtimeMs'>): void {
    this.db.prepare('UPDATE models SET file_mtime_ms = ?, optimized_size = ?, optimized_mtime_ms = ? WHERE id = ?')
      .run(s.fileMtimeMs, s.optimizedSize, s.optimizedMtimeMs, id)
  }

  get (id: string): ModelRecord | undefined {
    const row = this.db.prepare<[string], ModelRow>('SELECT * FROM models WHERE id = ?').get(id)
    return row === undefined ? undefined : this.record(row)
  }

  /** Newest first. */
  list (): ModelRecord[] {
    return this.db.prepare<[], ModelRow>('SELECT * FROM models ORDER BY created_at DESC, id').all().map((r) => this.record(r))
  }

  private record (r: ModelRow): ModelRecord {
    const providers = this.db.prepare<[string], { provider: string, threads: number, runs: number, p50_ms: number, p99_ms: number }>(
      'SELECT provider, threads, runs, p50_ms, p99_ms FROM model_benchmarks WHERE model_id = ? ORDER BY p50_ms').all(r.id)
    return {
      id: r.id,
      name: r.name,
      file: r.file,
      optimizedFile: r.optimized_file,
      sizeBytes: r.size_bytes,
      irVersion: r.ir_version,
      opset: r.opset,
      inputs: JSON.parse(r.inputs) as TensorSpec[],
      outputs: JSON.parse(r.outputs) as TensorSpec[],
      createdAt: r.created_at,
      origin: r.origin,
      fileMtimeMs: r.file_mtime_ms,
      optimizedSize: r.optimized_size,
      optimizedMtimeMs: r.optimized_mtime_ms,
      providers: providers.map((p) => ({ name: p.provider, threads: p.threads, runs: p.runs, p50Ms: p.p50_ms, p99Ms: p.p99_ms }))
    }
  }
}
