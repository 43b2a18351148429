import type { Database as DB } from 'better-sqlite3'
import type { TableSet } from '../common/schema.ts'
import type { TensorSpec } from './tensors.ts'

/** The registry's tables: the models and their measured latencies per execution provider. */
export const MODEL_TABLES: TableSet = {
  name: 'models',
  migrations: [
    {
      version: 4,
      sql: `
      -- ONNX models registered on this node, by content (sha256 of the file as given).
      CREATE TABLE models (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL,        -- the file name it was compiled from
        file           TEXT NOT NULL,        -- our copy of it
        optimized_file TEXT,                 -- its graph optimized for this box, when that worked
        size_bytes     INTEGER NOT NULL,
        ir_version     INTEGER NOT NULL,
        opset          INTEGER NOT NULL,
        inputs         TEXT NOT NULL,        -- JSON: [{ name, dtype, shape }]
        outputs        TEXT NOT NULL,
        created_at     INTEGER NOT NULL
      );
      -- Measured latency per execution provider.
      CREATE TABLE model_benchmarks (
        model_id TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        runs     INTEGER NOT NULL,
        p50_ms   REAL NOT NULL,
        p99_ms   REAL NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (model_id, provider)
      ) WITHOUT ROWID;
    `
    },
    {
      version: 6,
      sql: `
      -- The intra-op threads a model's latency was measured with (and it runs with, on its fastest provider).
      ALTER TABLE model_benchmarks ADD COLUMN threads INTEGER NOT NULL DEFAULT 1;
    `
    },
    {
      version: 9,
      sql: `
      -- Where a model came from: compiled by an operator, fetched on request, or kept on standby for work that
      -- may move here (only standby copies are collected once no work names them).
      ALTER TABLE models ADD COLUMN origin TEXT NOT NULL DEFAULT 'compiled';
      -- Each file's size and modification time when registered: a file that differs is not loaded (torn).
      ALTER TABLE models ADD COLUMN file_mtime_ms INTEGER;
      ALTER TABLE models ADD COLUMN optimized_size INTEGER;
      ALTER TABLE models ADD COLUMN optimized_mtime_ms INTEGER;
    `
    }
  ]
}

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
  /** JSON array of [provider, threads, runs, p50_ms, p99_ms], fastest first. */
  providers: string
}

/** A model's row with its benchmarks folded in, so a listing is one query whatever the number of models. */
const SELECT_MODELS = `
  SELECT m.*, (SELECT json_group_array(json_array(provider, threads, runs, p50_ms, p99_ms) ORDER BY p50_ms, provider)
    FROM model_benchmarks WHERE model_id = m.id) AS providers
  FROM models AS m`

/** The models registered on this node and their measured latencies (MODEL_TABLES). Statements are prepared on first use. */
export class ModelRegistry {
  private readonly db: DB
  private prepared: ReturnType<ModelRegistry['prepare']> | undefined

  constructor (components: { db: DB }) {
    this.db = components.db
  }

  private get statements (): ReturnType<ModelRegistry['prepare']> {
    this.prepared ??= this.prepare()
    return this.prepared
  }

  private prepare () {
    const put = this.db.prepare(`
      INSERT INTO models (id, name, file, optimized_file, size_bytes, ir_version, opset, inputs, outputs, created_at,
        origin, file_mtime_ms, optimized_size, optimized_mtime_ms)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET name = excluded.name, optimized_file = excluded.optimized_file,
        inputs = excluded.inputs, outputs = excluded.outputs,
        file_mtime_ms = excluded.file_mtime_ms, optimized_size = excluded.optimized_size, optimized_mtime_ms = excluded.optimized_mtime_ms,
        origin = CASE WHEN excluded.origin = 'standby' THEN models.origin ELSE excluded.origin END`)
    return {
      put: this.db.transaction((m: Omit<ModelRecord, 'providers'>, providers: ProviderBenchmark[]) => {
        put.run(m.id, m.name, m.file, m.optimizedFile, m.sizeBytes, m.irVersion, m.opset, JSON.stringify(m.inputs), JSON.stringify(m.outputs), m.createdAt,
          m.origin, m.fileMtimeMs, m.optimizedSize, m.optimizedMtimeMs)
        for (const p of providers) this.recordBenchmark(m.id, p)
      }),
      recordBenchmark: this.db.prepare(`
        INSERT INTO model_benchmarks (model_id, provider, threads, runs, p50_ms, p99_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO UPDATE SET threads = excluded.threads, runs = excluded.runs, p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms, at = excluded.at`),
      keep: this.db.prepare("UPDATE models SET origin = ? WHERE id = ? AND origin = 'standby'"),
      remove: this.db.prepare('DELETE FROM models WHERE id = ?'),
      stamp: this.db.prepare('UPDATE models SET file_mtime_ms = ?, optimized_size = ?, optimized_mtime_ms = ? WHERE id = ?'),
      get: this.db.prepare<[string], ModelRow>(`${SELECT_MODELS} WHERE m.id = ?`),
      list: this.db.prepare<[], ModelRow>(`${SELECT_MODELS} ORDER BY m.created_at DESC, m.id`)
    }
  }

  put (m: Omit<ModelRecord, 'providers'>, providers: ProviderBenchmark[]): void {
    this.statements.put(m, providers)
  }

  recordBenchmark (id: string, p: ProviderBenchmark, at = Date.now()): void {
    this.statements.recordBenchmark.run(id, p.name, p.threads, p.runs, p.p50Ms, p.p99Ms, at)
  }

  /** An operator asked for a model the standby had fetched: it is kept from now on. */
  keep (id: string, origin: Exclude<ModelOrigin, 'standby'>): void {
    this.statements.keep.run(origin, id)
  }

  /** Forgets a model (its benchmarks go with it). */
  remove (id: string): void {
    this.statements.remove.run(id)
  }

  /** The files' stamps, taken again (a model of an older version, verified by its hash). */
  stamp (id: string, s: Pick<ModelRecord, 'fileMtimeMs' | 'optimizedSize' | 'optimizedMtimeMs'>): void {
    this.statements.stamp.run(s.fileMtimeMs, s.optimizedSize, s.optimizedMtimeMs, id)
  }

  get (id: string): ModelRecord | undefined {
    const row = this.statements.get.get(id)
    return row === undefined ? undefined : record(row)
  }

  /** Newest first. */
  list (): ModelRecord[] {
    return this.statements.list.all().map(record)
  }
}

function record (r: ModelRow): ModelRecord {
  const providers = JSON.parse(r.providers) as Array<[string, number, number, number, number]>
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
    providers: providers.map(([name, threads, runs, p50Ms, p99Ms]) => ({ name, threads, runs, p50Ms, p99Ms }))
  }
}
