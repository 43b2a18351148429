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
export function transferList (tensors: Record<string, WireTensor>): ArrayBuffer[] {
  return Object.values(tensors).map((t) => t.data.buffer as ArrayBuffer)
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
