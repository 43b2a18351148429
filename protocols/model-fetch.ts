import { z } from 'zod'
import { versionedJson } from './codec.ts'
import { MODEL_ID } from './models.ts'

/**
 * A node fetches a model by id from a peer that announced it. The request and the answer's header are
 * length-prefixed JSON; then the file follows in length-prefixed chunks of MODEL_CHUNK_BYTES (the last one
 * shorter; a chunk of any other size is refused), a window of MODEL_WINDOW_CHUNKS at a time: the receiver asks for
 * each next window (`{ v: 1, more: true }`) once it has written the last one. A libp2p stream hands data on as it
 * arrives, whatever the reader's pace, so without this a receiver slower than the link (a busy box writing to an
 * SD card) overflows its read buffer. The receiver checks that the bytes hash to the id before it uses them.
 */
export const MODEL_FETCH_PROTOCOL = '/noodle/model-fetch/2.0.0'

/** Chunks of the file on the wire, and how many are in flight at most (1 MiB). */
export const MODEL_CHUNK_BYTES = 256 * 1024
export const MODEL_WINDOW_CHUNKS = 4
/** The largest model a node serves or accepts. */
export const MAX_MODEL_BYTES = 2 * 1024 ** 3

export const ModelFetchRequestSchema = z.object({
  v: z.literal(1),
  id: z.string().regex(MODEL_ID, 'must be a sha256 in hex')
})

export const ModelFetchHeaderSchema = z.discriminatedUnion('ok', [
  z.object({ v: z.literal(1), ok: z.literal(true), name: z.string().min(1).max(255), size: z.int().nonnegative().max(MAX_MODEL_BYTES) }),
  z.object({ v: z.literal(1), ok: z.literal(false), error: z.string().max(500) })
])

export type ModelFetchHeader = z.infer<typeof ModelFetchHeaderSchema>

export const modelFetchRequestCodec = versionedJson(256, 1, ModelFetchRequestSchema)
export const modelFetchHeaderCodec = versionedJson(1024, 1, ModelFetchHeaderSchema)
export const modelFetchMoreCodec = versionedJson(64, 1, z.object({ v: z.literal(1), more: z.literal(true) }))
