import { decode as decodeCbor, encode as encodeCbor } from 'cborg'
import { z } from 'zod'

/** Why a peer's message (gossip, or a stream protocol's) was refused; the `reason` label of its counter. */
export type MessageRejectReason = 'oversized' | 'malformed' | 'unknown-version' | 'invalid'

export type Decoded<T> =
  | { ok: true, value: T }
  | { ok: false, reason: MessageRejectReason, detail: string }

/** How one gossip topic's messages look on the wire: versioned JSON or CBOR, size-capped, schema-checked. */
export interface MessageCodec<T> extends JsonCodec<T> {
  readonly topic: string
}

const utf8 = new TextDecoder('utf-8', { fatal: true })
const encoder = new TextEncoder()

/**
 * What a failure of a union means: the issue of the one branch that took the value's type (a string for a
 * union of a string and a list), with the union's path before its own; the union's own "Invalid input" when no
 * branch, or several, took it. A record key that fails its rule is told by the rule.
 */
export function mainIssue (issue: z.core.$ZodIssue): z.core.$ZodIssue {
  // A record's key that fails its own rule: the rule's message, at the key's path.
  if (issue.code === 'invalid_key') {
    const inner = issue.issues[0]
    return inner === undefined ? issue : { ...mainIssue(inner), path: issue.path }
  }
  if (issue.code !== 'invalid_union') return issue
  const taken = issue.errors.filter((branch) => branch.length > 0 && !(branch[0]?.code === 'invalid_type' && branch[0].path.length === 0))
  const inner = taken.length === 1 ? taken[0]?.[0] : undefined
  if (inner === undefined) return issue
  const main = mainIssue(inner)
  return { ...main, path: [...issue.path, ...main.path] }
}

/**
 * Where a schema failure is, as an operator writes it: `mqtt.topics[0]`, `topicParsing[0].levels`; for an
 * unknown key, the key itself (`mdns.enabeld`). Config errors and API request errors name fields this way.
 */
export function issueKey (issue: z.core.$ZodIssue): string {
  const path = issue.path.map((p) => typeof p === 'number' ? `[${p}]` : `.${String(p)}`).join('').replace(/^\./, '')
  return issue.code === 'unrecognized_keys' ? [path, issue.keys[0]].filter((p) => p !== '').join('.') : path
}

/** The field path and message of a schema failure, e.g. `cpuPct: Too big: expected number to be <=100`. */
export function describeIssue (error: z.ZodError): string {
  const first = error.issues[0]
  if (first == null) return 'invalid'
  const issue = mainIssue(first)
  const path = issue.path.map(String).join('.')
  return path === '' ? issue.message : `${path}: ${issue.message}`
}

/** Reads and writes one versioned message shape (JSON, or CBOR: `versionedCbor`), whatever carries it (a gossip topic, a stream). */
export interface JsonCodec<T> {
  readonly maxBytes: number
  encode (value: T): Uint8Array
  decode (bytes: Uint8Array): Decoded<T>
}

/**
 * JSON messages that carry `v` (their schema version). Readers ignore fields they do not know, so a field can be
 * added within a version; anything a reader must understand bumps `v`.
 */
export function versionedJson<S extends z.ZodType<{ v: number }>> (maxBytes: number, version: number,
  schema: S): JsonCodec<z.infer<S>> {
  return {
    maxBytes,
    encode (value) {
      return encoder.encode(JSON.stringify(value))
    },
    decode (bytes) {
      if (bytes.byteLength > maxBytes) {
        return { ok: false, reason: 'oversized', detail: `${bytes.byteLength} bytes exceeds ${maxBytes}` }
      }
      let json: unknown
      try {
        json = JSON.parse(utf8.decode(bytes))
      } catch (err) {
        return { ok: false, reason: 'malformed', detail: (err as Error).message }
      }
      if (typeof json !== 'object' || json === null || !('v' in json)) {
        return { ok: false, reason: 'malformed', detail: 'not an object with a version field "v"' }
      }
      if (json.v !== version) {
        return { ok: false, reason: 'unknown-version', detail: `v=${JSON.stringify(json.v)}, this agent reads v=${version}` }
      }
      const parsed = schema.safeParse(json)
      if (!parsed.success) return { ok: false, reason: 'invalid', detail: describeIssue(parsed.error) }
      return { ok: true, value: parsed.data }
    }
  }
}

/** A gossip topic's codec. */
export function jsonCodec<S extends z.ZodType<{ v: number }>> (topic: string, maxBytes: number, version: number,
  schema: S): MessageCodec<z.infer<S>> {
  return { topic, ...versionedJson(maxBytes, version, schema) }
}

/** A z.object whose first key is its schema version `v`: its keys, in order, are the positions of its CBOR array. */
type PositionalSchema = z.ZodObject<{ v: z.ZodType<number> } & z.core.$ZodLooseShape>

/**
 * Binary messages: a CBOR array holding the fields of `schema` in the order the schema declares them, its version
 * `v` first, so no key names travel. A field absent from the value travels as CBOR `undefined` (or not at all at
 * the end). A field can be added within a version at the end only, with a default or optional, and readers ignore
 * positions past the ones they know; anything else bumps `v`. Decoding runs the steps of `versionedJson`: size,
 * CBOR, version, schema; and so refuses with the same reasons.
 */
export function versionedCbor<S extends PositionalSchema> (maxBytes: number, version: number, schema: S): JsonCodec<z.infer<S>> {
  const keys = Object.keys(schema.shape)
  return {
    maxBytes,
    encode (value) {
      const fields = keys.map((key) => (value as Record<string, unknown>)[key])
      while (fields.length > 0 && fields[fields.length - 1] === undefined) fields.pop()
      return encodeCbor(fields)
    },
    decode (bytes) {
      if (bytes.byteLength > maxBytes) {
        return { ok: false, reason: 'oversized', detail: `${bytes.byteLength} bytes exceeds ${maxBytes}` }
      }
      let fields: unknown
      try {
        fields = decodeCbor(bytes)
      } catch (err) {
        // A RangeError too: arrays nested thousands deep overflow the decoder's stack.
        return { ok: false, reason: 'malformed', detail: (err as Error).message }
      }
      if (!Array.isArray(fields) || fields.length === 0) {
        return { ok: false, reason: 'malformed', detail: 'not an array with the version first' }
      }
      if (fields[0] !== version) {
        return { ok: false, reason: 'unknown-version', detail: `v=${String(fields[0])}, this agent reads v=${version}` }
      }
      const object: Record<string, unknown> = {}
      keys.forEach((key, i) => { if (fields[i] !== undefined) object[key] = fields[i] })
      const parsed = schema.safeParse(object)
      if (!parsed.success) return { ok: false, reason: 'invalid', detail: describeIssue(parsed.error) }
      return { ok: true, value: parsed.data }
    }
  }
}

/** A gossip topic's binary codec (see `versionedCbor`). */
export function cborCodec<S extends PositionalSchema> (topic: string, maxBytes: number, version: number,
  schema: S): MessageCodec<z.infer<S>> {
  return { topic, ...versionedCbor(maxBytes, version, schema) }
}
