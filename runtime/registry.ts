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
}

/** The models registered on this node and their measured latencies (tables of migration 4). */
export class ModelRegistry {
  private readonly db: DB

  constructor (components: { db: DB }) {
    this.db = components.db
  }

  put (m: Omit<ModelRecord, 'providers'>, providers: ProviderBenchmark[]): void {
    this.db.transaction(() => {
      this.db.prepare(`
        INSERT INTO models (id, name, file, optimized_file, size_bytes, ir_version, opset, inputs, outputs, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET name = excluded.name, optimized_file = excluded.optimized_file`)
        .run(m.id, m.name, m.file, m.optimizedFile, m.sizeBytes, m.irVersion, m.opset, JSON.stringify(m.inputs), JSON.stringify(m.outputs), m.createdAt)
      for (const p of providers) this.recordBenchmark(m.id, p)
    })()
  }

  recordBenchmark (id: string, p: ProviderBenchmark, at = Date.now()): void {
    this.db.prepare(`
      INSERT INTO model_benchmarks (model_id, provider, threads, runs, p50_ms, p99_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT DO UPDATE SET threads = excluded.threads, runs = excluded.runs, p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms, at = excluded.at`)
      .run(id, p.name, p.threads, p.runs, p.p50Ms, p.p99Ms, at)
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
      providers: providers.map((p) => ({ name: p.provider, threads: p.threads, runs: p.runs, p50Ms: p.p50_ms, p99Ms: p.p99_ms }))
    }
  }
}
