/** Tensors as they cross between threads: plain typed arrays (transferred, not copied) with their type and shape. */

export const DTYPES = ['float32', 'float16', 'int32', 'int64', 'uint8', 'int8', 'bool'] as const
export type Dtype = typeof DTYPES[number]

export interface WireTensor {
  dtype: string
  dims: number[]
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array
}

export type Feeds = Record<string, WireTensor>

/** An input or output as a model declares it; a free dimension is its symbolic name (or -1). */
export interface TensorSpec {
  name: string
  dtype: string
  shape: Array<number | string>
}

/** The buffers to transfer along with `tensors`. */
export function transferList (tensors: Record<string, WireTensor>, into: ArrayBuffer[] = []): ArrayBuffer[] {
  // On every run's path (both ways): a plain loop, no intermediate arrays.
  for (const name in tensors) into.push((tensors[name] as WireTensor).data.buffer as ArrayBuffer)
  return into
}

/** Bytes per element of each type a sample can be made of. */
export const DTYPE_BYTES: Record<Dtype, number> = { float32: 4, float16: 2, int32: 4, int64: 8, uint8: 1, int8: 1, bool: 1 }

/**
 * The shape of a sample of `spec`: its fixed sizes as the model declares them (a requested size does not change
 * those), and for free dimensions the matching entry of `dims` when given, else 1 for the first (the batch) and
 * `freeDim` for the rest.
 */
export function sampleShape (spec: TensorSpec, dims: number[] | undefined, freeDim = 224): number[] {
  return spec.shape.map((d, i) => typeof d === 'number' && d > 0 ? d : dims?.[i] ?? (i === 0 ? 1 : freeDim))
}

/** How many bytes a sample of `spec` takes (see sampleShape); Infinity for a type no sample can be made of. */
export function sampleBytes (spec: TensorSpec, dims: number[] | undefined, freeDim = 224): number {
  const bytes = DTYPE_BYTES[spec.dtype as Dtype] as number | undefined
  return bytes === undefined ? Infinity : sampleShape(spec, dims, freeDim).reduce((a, b) => a * b, bytes)
}

/**
 * A tensor of `spec`'s type filled with values in [0, 1) (zeros for integer types), for benchmarks and checks,
 * of the shape sampleShape gives.
 */
export function sampleTensor (spec: TensorSpec, dims: number[] | undefined, freeDim = 224): WireTensor {
  const shape = sampleShape(spec, dims, freeDim)
  const size = shape.reduce((a, b) => a * b, 1)
  switch (spec.dtype) {
    case 'float32': {
      const data = new Float32Array(size)
      // A cheap ramp, not Math.random(): a 640×640 image is 1.2 M values, filled on the event loop.
      for (let i = 0; i < size; i++) data[i] = (i % 251) / 251
      return { dtype: 'float32', dims: shape, data }
    }
    case 'int32': return { dtype: 'int32', dims: shape, data: new Int32Array(size) }
    case 'int64': return { dtype: 'int64', dims: shape, data: new BigInt64Array(size) }
    case 'uint8': case 'bool': return { dtype: spec.dtype, dims: shape, data: new Uint8Array(size) }
    case 'int8': return { dtype: 'int8', dims: shape, data: new Int8Array(size) }
    case 'float16': return { dtype: 'float16', dims: shape, data: new Uint16Array(size) }
    default: throw new Error(`no sample data for inputs of type ${spec.dtype}`)
  }
}

/**
 * The inputs sampleTensor fills with zeros (every type but float32), named as a message shows them (at most
 * MAX_LISTED, each cut to MAX_SYMBOL_SHOWN characters): a model that checks their values refuses a sample run.
 */
export function zeroSampled (inputs: readonly TensorSpec[]): string | undefined {
  const names = inputs.filter((i) => i.dtype !== 'float32').map((i) => i.name.slice(0, MAX_SYMBOL_SHOWN))
  return names.length === 0 ? undefined : names.slice(0, MAX_LISTED).join(', ') + (names.length > MAX_LISTED ? '…' : '')
}

/** A free dimension named like a batch (or the first, unnamed or not) runs one sample. */
export const BATCH_NAME = /^(batch|batch_size|batchsize|bs|n|b|none)$/i
/** The largest size a free dimension is given from a request. */
const MAX_GIVEN_DIM = 65_536

/** Why a model's inputs cannot be given sizes, naming the one and the setting to fix it with. */
export class ShapeError extends Error {
  readonly input: string

  constructor (input: string, message: string) {
    super(message)
    this.name = 'ShapeError'
    this.input = input
  }
}

/** Missing dimensions a `needs` message lists at most, and how much of a symbol's name it quotes. */
const MAX_LISTED = 3
const MAX_SYMBOL_SHOWN = 64

/**
 * The height and width a model says its image inputs take, from its metadata: Ultralytics' `imgsz` ("[640, 640]",
 * height first, or one number for both). Undefined where it says none, or nothing sensible (the file is not
 * trusted: each side a whole number from 1 to MAX_GIVEN_DIM).
 */
export function imageSizeOf (metadata: Readonly<Record<string, string>>): [number, number] | undefined {
  const text = metadata.imgsz
  const match = text === undefined ? null : /^\s*(?:\[\s*(\d{1,6})\s*(?:,\s*(\d{1,6})\s*)?\]|(\d{1,6}))\s*$/.exec(text)
  if (match === null) return undefined
  const height = Number(match[1] ?? match[3])
  const width = Number(match[2] ?? height)
  return [height, width].every((d) => d >= 1 && d <= MAX_GIVEN_DIM) ? [height, width] : undefined
}

/**
 * The shapes a model's inputs are run at, for a benchmark or a check. A fixed size is the model's; a symbolic
 * dimension has one value across every input (`batch` in `input [batch, 512]` and `state [2, batch, 128]`);
 * `given` (by input name) fills free dimensions (a model's fixed sizes win over it; two given inputs that size one
 * symbol differently are refused); a free dimension that looks like a batch (named so, or the first of an image
 * input or an unnamed one) is 1; the free height and width of an image input (4-D, 1 or 3 channels) are
 * `imageSize` (the model's own, from its metadata: imageSizeOf; else 224×224). What is still free is named in
 * `needs`, with the `--shape` that would size it. The result does not depend on the order of the inputs.
 */
export function sampleShapes (inputs: readonly TensorSpec[], given: Readonly<Record<string, readonly number[]>> = {},
  imageSize: readonly [number, number] = [224, 224]): { shapes: number[][], needs: null } | { shapes: null, needs: string } {
  const asked = new Map(Object.entries(given))
  for (const [name, dims] of asked) {
    const spec = inputs.find((i) => i.name === name)
    if (spec === undefined) throw new ShapeError(name, `the model has no input "${name.slice(0, MAX_SYMBOL_SHOWN)}" (its inputs: ${inputs.slice(0, 16).map((i) => i.name.slice(0, MAX_SYMBOL_SHOWN)).join(', ')})`)
    if (dims.length !== spec.shape.length) throw new ShapeError(name, `input "${name}" has ${spec.shape.length} dimensions, not ${dims.length}`)
    if (dims.some((d) => !Number.isInteger(d) || d < 1 || d > MAX_GIVEN_DIM)) throw new ShapeError(name, `sizes must be whole numbers from 1 to ${MAX_GIVEN_DIM}`)
  }
  const image = (spec: TensorSpec) => spec.shape.length === 4 && ([1, 3].includes(spec.shape[1] as number) || [1, 3].includes(spec.shape[3] as number))
  const free = (d: number | string) => !(typeof d === 'number' && d > 0)
  // 1. What was given binds its symbols; two given sizes for one symbol are refused.
  const bound = new Map<string, number>()
  for (const spec of inputs) {
    const dims = asked.get(spec.name)
    if (dims === undefined) continue
    spec.shape.forEach((d, k) => {
      if (typeof d !== 'string' || d === '' || !free(d)) return
      const size = dims[k] as number
      const before = bound.get(d)
      if (before !== undefined && before !== size) throw new ShapeError(spec.name, `input "${spec.name}" gives "${d.slice(0, MAX_SYMBOL_SHOWN)}" ${size}, another input ${before}: a dimension has one size`)
      bound.set(d, size)
    })
  }
  // 2. Defaults for what is still free, over every input before any shape is built (so order does not matter).
  const defaultOf = (spec: TensorSpec, k: number, symbol: string | undefined): number | undefined => {
    if ((symbol !== undefined && BATCH_NAME.test(symbol)) || (k === 0 && (symbol === undefined || image(spec)))) return 1
    const spatial = spec.shape[1] === 3 || spec.shape[1] === 1 ? [2, 3] : [1, 2]
    return image(spec) && spatial.includes(k) ? imageSize[spatial.indexOf(k)] : undefined
  }
  for (const spec of inputs) {
    if (asked.has(spec.name)) continue
    spec.shape.forEach((d, k) => {
      if (typeof d !== 'string' || d === '' || bound.has(d)) return
      const size = defaultOf(spec, k, d)
      if (size !== undefined) bound.set(d, size)
    })
  }
  // 3. The shapes.
  const missing: Array<{ spec: TensorSpec, text: string }> = []
  const shapes = inputs.map((spec) => {
    const dims = asked.get(spec.name)
    return spec.shape.map((d, k) => {
      if (!free(d)) return d as number
      if (dims !== undefined) return dims[k] as number
      const symbol = typeof d === 'string' && d !== '' ? d : undefined
      const size = symbol !== undefined ? bound.get(symbol) : defaultOf(spec, k, undefined)
      if (size === undefined) missing.push({ spec, text: `input "${spec.name.slice(0, MAX_SYMBOL_SHOWN)}": dimension ${k}${symbol === undefined ? '' : ` ("${symbol.slice(0, MAX_SYMBOL_SHOWN)}")`}` })
      return size ?? 0
    })
  })
  if (missing.length > 0) {
    const { spec } = missing[0] as { spec: TensorSpec }
    const listed = missing.slice(0, MAX_LISTED).map((m) => m.text).join('; ') + (missing.length > MAX_LISTED ? `; and ${missing.length - MAX_LISTED} more` : '')
    const example = spec.shape.length <= 16 ? spec.shape.map((d) => free(d) ? 'N' : d).join(',') : 'd1,d2,…'
    return { shapes: null, needs: `no size is known for ${listed}: give one with --shape ${spec.name.slice(0, MAX_SYMBOL_SHOWN)}=${example} (the API's "shapes")` }
  }
  return { shapes, needs: null }
}

/** An image input: 4-D with 1 or 3 channels (NCHW or NHWC). */
function isImage (spec: TensorSpec): boolean {
  return spec.shape.length === 4 && ([1, 3].includes(spec.shape[1] as number) || [1, 3].includes(spec.shape[3] as number))
}

/**
 * Whether requests for a model may be run as one batch, concatenated along their first dimension and the outputs
 * split back: every input and output has a free first dimension (and no string type); the inputs' first
 * dimensions are one symbol (where named), used nowhere else in them, and it is a batch by its name (`batch`,
 * `N`…) or by convention (the first dimension of an image input). A free first dimension that may be something
 * else (a sequence, a list of boxes) is not batched: rows of one request could then see another's. At run time
 * the outputs must also come back with as many rows as went in (runtime/inference-worker.ts checks).
 */
export function batchable (inputs: readonly TensorSpec[], outputs: readonly TensorSpec[]): boolean {
  if (inputs.length === 0 || outputs.length === 0) return false
  const free = (d: number | string | undefined) => typeof d === 'string' || (typeof d === 'number' && d < 1)
  const named = (d: number | string | undefined) => typeof d === 'string' && d !== '' && d !== '-1' ? d : undefined
  if ([...inputs, ...outputs].some((t) => t.shape.length === 0 || !free(t.shape[0]) || !DTYPES.includes(t.dtype as Dtype))) return false
  const symbols = new Set(inputs.map((t) => named(t.shape[0])).filter((d) => d !== undefined))
  if (symbols.size > 1) return false
  const symbol = [...symbols][0]
  if (symbol !== undefined && [...inputs, ...outputs].some((t) => t.shape.slice(1).includes(symbol))) return false
  return inputs.every((t) => isImage(t) || (symbol !== undefined && BATCH_NAME.test(symbol)))
}
