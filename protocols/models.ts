import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { TOPICS } from './topics.ts'

const TensorSpecSchema = z.object({
  name: z.string().min(1).max(256),
  dtype: z.string().min(1).max(32),
  shape: z.array(z.union([z.int(), z.string().max(128)])).max(16)
})

/**
 * A model's id: the sha256 of its file, in hex. Work from another home names its model so (a path names a file
 * on its home and never travels).
 */
export const MODEL_ID = /^[0-9a-f]{64}$/

/**
 * A node compiled (verified, optimized, benchmarked and registered) a model: who has which model by content id,
 * and how fast it runs there, for the coordinator placing models and for nodes fetching one.
 */
export const ModelCompiledSchema = z.object({
  v: z.literal(1),
  /** sha256 of the model file, hex. */
  id: z.string().regex(MODEL_ID, 'must be a sha256 in hex'),
  name: z.string().min(1).max(255),
  sizeBytes: z.int().nonnegative(),
  opset: z.int().min(1).max(1000),
  inputs: z.array(TensorSpecSchema).max(64),
  outputs: z.array(TensorSpecSchema).max(64),
  providers: z.array(z.object({ name: z.string().min(1).max(32), p50Ms: z.number().nonnegative(), p99Ms: z.number().nonnegative() })).max(8)
})

export type ModelCompiled = z.infer<typeof ModelCompiledSchema>

export const modelCompiledCodec = jsonCodec(TOPICS.modelCompilation, 64 * 1024, 1, ModelCompiledSchema)

/**
 * Sizes for a model's inputs, by name: the free dimensions of each (the model's fixed sizes win). At most 16
 * inputs, each of at most 16 dimensions (as a model's inputs) and MAX_BENCH_ELEMENTS elements.
 */
export const InputShapesSchema = z.record(z.string().min(1).max(256), z.array(z.int().min(1).max(65_536)).max(16)
  .refine((dims) => dims.reduce((a, b) => a * b, 1) <= MAX_BENCH_ELEMENTS_OF_SHAPES, 'must hold at most 4194304 elements (the product of its sizes)'))
  .refine((shapes) => Object.keys(shapes).length <= 16, 'at most 16 inputs')

/** `POST /api/v1/models/compile`: a model file on this box, and the sizes its free inputs run at. */
export const CompileRequestSchema = z.strictObject({ file: z.string().min(1).max(4096), shapes: InputShapesSchema.optional() })

/** A bench's requested shape holds at most this many elements (16 MiB of float32): one per worker lane is allocated. */
export const MAX_BENCH_ELEMENTS = 4 * 1024 * 1024
const MAX_BENCH_ELEMENTS_OF_SHAPES = MAX_BENCH_ELEMENTS
/**
 * A sample input set (every input of the model, at the sizes the model fixes and the shape asked for) takes at most
 * this many bytes: the bench (and compile's own timing) allocates one per worker lane, and fills it on the event loop.
 */
export const MAX_SAMPLE_BYTES = 16 * 1024 * 1024
/** A bench runs at most this many times, and processes at most this many input elements in all (runs × shape). */
export const MAX_BENCH_RUNS = 10_000
export const MAX_BENCH_WORK = 2 ** 30

/** `POST /api/v1/models/bench`: a registered model (id or a unique prefix), how many runs, the first input's shape. */
export const BenchRequestSchema = z.strictObject({
  id: z.string().regex(/^[0-9a-f]{4,64}$/, 'must be a model id (hex, at least 4 characters)'),
  runs: z.int().min(1).max(MAX_BENCH_RUNS).default(100),
  shape: z.array(z.int().min(1).max(65_536)).min(1).max(8)
    .refine((dims) => dims.reduce((a, b) => a * b, 1) <= MAX_BENCH_ELEMENTS, `must hold at most ${MAX_BENCH_ELEMENTS} elements (the product of its sizes)`)
    .optional(),
  /** Sizes by input name, for models of several inputs or free dimensions past the first input. */
  shapes: InputShapesSchema.optional()
}).refine((b) => b.shape === undefined || b.shapes === undefined, {
  path: ['shape'],
  message: 'give the first input\'s shape or shapes by name, not both'
}).refine((b) => b.shape === undefined || b.runs * b.shape.reduce((a, c) => a * c, 1) <= MAX_BENCH_WORK, {
  path: ['runs'],
  message: `times the elements of shape must be at most ${MAX_BENCH_WORK}: fewer runs, or a smaller shape`
})

/** `POST /api/v1/models/fetch`: a model another node announced, by its full id. */
export const FetchRequestSchema = z.strictObject({ id: z.string().regex(MODEL_ID, 'must be a full model id (64 hex characters)') })
