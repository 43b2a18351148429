import { open } from 'node:fs/promises'
import { ModelError } from '../common/errors.ts'

/**
 * What the top of an ONNX file (a protobuf `ModelProto`) says, read without loading the model: enough to tell an
 * ONNX model from anything else, to notice a truncated file, and to learn its IR version and opsets. The graph
 * itself is skipped over; onnxruntime reads it.
 */
export interface OnnxHeader {
  irVersion: number
  producer: string
  /** Operator sets by domain ("" is the default ONNX domain). */
  opsets: Array<{ domain: string, version: number }>
}

/** The oldest and newest default-domain opsets onnxruntime 1.30 runs. */
export const MIN_OPSET = 7
export const MAX_OPSET = 23

// ModelProto field numbers (onnx.proto3).
const IR_VERSION = 1
const PRODUCER_NAME = 2
const GRAPH = 7
const OPSET_IMPORT = 8

class Reader {
  pos = 0
  private readonly bytes: Uint8Array
  private readonly end: number

  constructor (bytes: Uint8Array) {
    this.bytes = bytes
    this.end = bytes.length
  }

  varint (): number {
    let result = 0
    let shift = 0
    for (;;) {
      if (this.pos >= this.end) throw new ModelError('the file ends in the middle of a field: it is truncated')
      const byte = this.bytes[this.pos++] as number
      result += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return result
      shift += 7
      if (shift > 63) throw new ModelError('not an ONNX model: malformed protobuf varint')
    }
  }

  /** Skips a field of wire type `type`, or returns its bytes for type 2. */
  field (type: number): Uint8Array | null {
    switch (type) {
      case 0: this.varint(); return null
      case 1: this.advance(8); return null
      case 5: this.advance(4); return null
      case 2: {
        const length = this.varint()
        const start = this.pos
        this.advance(length)
        return this.bytes.subarray(start, start + length)
      }
      default: throw new ModelError(`not an ONNX model: protobuf wire type ${type} at byte ${this.pos}`)
    }
  }

  private advance (n: number): void {
    if (this.pos + n > this.end) throw new ModelError(`the file ends ${this.pos + n - this.end} bytes short of a field: it is truncated`)
    this.pos += n
  }
}

export function readOnnxHeader (bytes: Uint8Array): OnnxHeader {
  if (bytes.length === 0) throw new ModelError('the file is empty')
  const reader = new Reader(bytes)
  const header: OnnxHeader = { irVersion: 0, producer: '', opsets: [] }
  let hasGraph = false
  while (reader.pos < bytes.length) {
    const key = reader.varint()
    const field = Math.floor(key / 8)
    const type = key & 7
    if (field === 0) throw new ModelError('not an ONNX model: protobuf field number 0')
    if (type === 0) {
      const number = reader.varint()
      if (field === IR_VERSION) header.irVersion = number
      continue
    }
    const value = reader.field(type)
    if (field === PRODUCER_NAME && value !== null) {
      header.producer = Buffer.from(value).toString('utf8')
    } else if (field === GRAPH && value !== null) {
      hasGraph = true
    } else if (field === OPSET_IMPORT && value !== null) {
      header.opsets.push(readOpset(value))
    }
  }
  if (header.irVersion === 0 || !hasGraph) {
    throw new ModelError(`not an ONNX model: ${header.irVersion === 0 ? 'no IR version' : 'no graph'}`)
  }
  return header
}

function readOpset (bytes: Uint8Array): { domain: string, version: number } {
  const reader = new Reader(bytes)
  const opset = { domain: '', version: 0 }
  while (reader.pos < bytes.length) {
    const key = reader.varint()
    const field = Math.floor(key / 8)
    const type = key & 7
    if (field === 2 && type === 0) {
      opset.version = reader.varint()
      continue
    }
    const value = reader.field(type)
    if (field === 1 && value !== null) opset.domain = Buffer.from(value).toString('utf8')
  }
  return opset
}

/** The default-domain opset, checked against what onnxruntime runs. */
export function defaultOpset (header: OnnxHeader): number {
  const opset = header.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version
  if (opset === undefined) throw new ModelError('the model imports no default ONNX opset')
  if (opset < MIN_OPSET || opset > MAX_OPSET) {
    throw new ModelError(`opset ${opset} is not supported (onnxruntime here runs ${MIN_OPSET}–${MAX_OPSET})`)
  }
  return opset
}

// ModelProto.metadata_props, and StringStringEntryProto's fields.
const METADATA_PROPS = 14
/** Metadata a model file may bring: the file is not trusted (a model from another member). */
const MAX_METADATA_ENTRIES = 64
const MAX_METADATA_ENTRY_BYTES = 256 * 1024

/**
 * The key–value metadata at the top of an ONNX file (Ultralytics writes its class `names` there), read field by
 * field from disk: the graph, often hundreds of megabytes, is skipped over, never read. Entries past the limits,
 * and text that is not UTF-8, are left out.
 */
export async function readOnnxMetadata (file: string): Promise<Record<string, string>> {
  const metadata = new Map<string, string>()
  const handle = await open(file, 'r')
  try {
    const { size } = await handle.stat()
    const head = Buffer.alloc(20)
    let pos = 0
    let entries = 0
    // A ModelProto has a dozen top-level fields and its metadata entries: a file of millions is not read through.
    for (let fields = 0; pos < size && entries < MAX_METADATA_ENTRIES && fields < 4 * MAX_METADATA_ENTRIES; fields++) {
      const { bytesRead } = await handle.read(head, 0, head.length, pos)
      const reader = new Reader(head.subarray(0, bytesRead))
      const key = reader.varint()
      const type = key & 7
      if (type !== 2) {
        reader.field(type)
        pos += reader.pos
        continue
      }
      const length = reader.varint()
      pos += reader.pos
      if (Math.floor(key / 8) === METADATA_PROPS && length <= MAX_METADATA_ENTRY_BYTES) {
        const entry = Buffer.alloc(length)
        await handle.read(entry, 0, length, pos)
        const [k, v] = readEntry(entry)
        // Only entries kept count towards the limit: empty ones placed first cannot hide a real one.
        if (k !== undefined && k !== '' && v !== undefined && !metadata.has(k)) {
          metadata.set(k, v)
          entries++
        }
      }
      pos += length
    }
  } catch (err) {
    if (!(err instanceof ModelError)) throw err // a malformed file has the metadata read so far
  } finally {
    await handle.close()
  }
  // Own properties whatever the keys (`__proto__` among them).
  return Object.fromEntries(metadata)
}

function readEntry (bytes: Uint8Array): [string | undefined, string | undefined] {
  const reader = new Reader(bytes)
  const text = new TextDecoder('utf-8', { fatal: true })
  let key: string | undefined
  let value: string | undefined
  while (reader.pos < bytes.length) {
    const tag = reader.varint()
    const field = reader.field(tag & 7)
    if (field === null) continue
    try {
      if (tag >> 3 === 1) key = text.decode(field)
      else if (tag >> 3 === 2) value = text.decode(field)
    } catch {
      return [undefined, undefined]
    }
  }
  return [key, value]
}
