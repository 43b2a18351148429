import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, rename, rm, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { FetchRefusedError, ModelError, UnknownModelError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { BoundedMap } from '../common/bounded-map.ts'
import { REJECTED_METRIC } from '../protocols/validator.ts'
import type { RejectionCounter } from '../protocols/validator.ts'
import {
  MAX_MODEL_BYTES, MODEL_CHUNK_BYTES, MODEL_FETCH_PROTOCOL, MODEL_WINDOW_CHUNKS, modelFetchHeaderCodec, modelFetchMoreCodec, modelFetchRequestCodec
} from '../protocols/model-fetch.ts'
import type { ModelCompiled } from '../protocols/models.ts'
import { syncDir, temporaryPath } from './files.ts'
import { compileResult } from './model-runtime.ts'
import type { CompileResult, ModelRuntime } from './model-runtime.ts'
import type { ModelOrigin } from './registry.ts'

/** How long one fetch may take in all (a large model over a slow link), and how long a peer may stay silent. */
const FETCH_TIMEOUT_MS = 10 * 60_000
const SERVE_TIMEOUT_MS = 10 * 60_000
/** Models whose holders are remembered: announcements beyond these forget the least recently announced. */
const MAX_ANNOUNCED_MODELS = 1024
/**
 * How long a transfer of `size` bytes may take once announced: a grace for the start, then at least 64 KiB/s
 * (a slow link, still), never over FETCH_TIMEOUT_MS. A peer that drips bytes would otherwise hold the standby's
 * one-at-a-time queue for the whole fetch timeout, model after model.
 */
export function transferDeadlineMs (size: number): number {
  return Math.min(FETCH_TIMEOUT_MS, TRANSFER_GRACE_MS + Math.ceil(size / MIN_TRANSFER_BYTES_PER_MS))
}
const TRANSFER_GRACE_MS = 15_000
const MIN_TRANSFER_BYTES_PER_MS = 64 * 1024 / 1000

/** Free space a fetched model must leave on the disk: the store, logs and the compiled copies need room too. */
const DISK_MARGIN_BYTES = 64 * 1024 ** 2

/** Why a fetch from a peer was refused: counted in noodle_gossip_rejected_total under the fetch protocol. */
export type FetchRefusal = 'too-large' | 'no-disk-space' | 'oversized' | 'bad-chunk' | 'hash-mismatch' | 'stalled' | 'too-slow' | 'bad-answer'

class RefusedFetch extends FetchRefusedError<FetchRefusal> {}

/** What the exchange uses of the libp2p node: its stream protocol, served and dialled. */
export type ProtocolHost = Pick<Libp2p, 'handle' | 'unhandle' | 'dialProtocol'>

/**
 * Models between nodes: serves the models registered here to peers, remembers which peers announced which
 * models, and fetches a model from one of them (verifying its hash) so it can be compiled and run here.
 */
export class ModelExchange {
  private readonly node: ProtocolHost
  private readonly runtime: ModelRuntime
  private readonly modelsDir: string
  private readonly log: Logger
  private readonly metrics: RejectionCounter | undefined
  private readonly maxModelBytes: number
  private readonly maxStandbyBytes: number
  private readonly idleTimeoutMs: number
  private readonly diskMarginBytes: number
  /** Model id → peers that announced it, most recent last. */
  private readonly holders = new BoundedMap<string, string[]>(MAX_ANNOUNCED_MODELS, { refresh: true })
  private readonly fetching = new Map<string, Promise<CompileResult>>()

  constructor (components: {
    node: ProtocolHost
    runtime: ModelRuntime
    modelsDir: string
    log: Logger
    metrics?: RejectionCounter
    /** The largest model taken from a peer; a sender that announces or sends more is cut off. */
    maxModelBytes?: number
    /** The largest standby copy (a model for work from another home): that box's policy caps what it runs. */
    maxStandbyBytes?: number
    /** A peer silent this long in the middle of a transfer is cut off. */
    idleTimeoutMs?: number
    diskMarginBytes?: number
  }) {
    this.node = components.node
    this.runtime = components.runtime
    this.modelsDir = components.modelsDir
    this.log = components.log
    this.metrics = components.metrics
    this.maxModelBytes = Math.min(components.maxModelBytes ?? MAX_MODEL_BYTES, MAX_MODEL_BYTES)
    this.maxStandbyBytes = Math.min(components.maxStandbyBytes ?? this.maxModelBytes, this.maxModelBytes)
    this.idleTimeoutMs = components.idleTimeoutMs ?? 30_000
    this.diskMarginBytes = components.diskMarginBytes ?? DISK_MARGIN_BYTES
  }

  async start (): Promise<void> {
    await this.node.handle(MODEL_FETCH_PROTOCOL, this.onStream, { maxInboundStreams: 4, maxOutboundStreams: 4 })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(MODEL_FETCH_PROTOCOL)
  }

  /** A peer announced a model (noodle/1/model.compilation). */
  observe (model: ModelCompiled, from: PeerId): void {
    const peers = (this.holders.get(model.id) ?? []).filter((p) => p !== from.toString())
    peers.push(from.toString())
    // Ordered by last announcement (refresh): a flood of made-up ids pushes out only its own.
    this.holders.set(model.id, peers.slice(-16))
  }

  /** Peers known to have a model. */
  holdersOf (id: string): string[] {
    return [...this.holders.get(id) ?? []]
  }

  /**
   * Makes sure a model is here: fetched from a peer that has it when it is not, then compiled (a standby copy
   * is only stored: see ModelRuntime.store). `alsoAsk` names
   * peers likely to have it though they were not heard announcing it (the home of the work that uses it). One
   * fetch of a model at a time: a second caller waits for the first. `origin` is what the registry records: an
   * operator's fetch is kept, a standby copy is collected once no work names it.
   */
  async fetch (id: string, alsoAsk: readonly string[] = [], origin: Exclude<ModelOrigin, 'compiled'> = 'fetched'): Promise<CompileResult> {
    const local = this.runtime.lookup(id)
    if (local !== undefined) {
      if (origin === 'fetched') this.runtime.keep(id, origin)
      return compileResult(local)
    }
    let fetching = this.fetching.get(id)
    if (fetching === undefined) {
      fetching = this.fetchFromPeers(id, alsoAsk, origin).finally(() => { this.fetching.delete(id) })
      this.fetching.set(id, fetching)
    }
    const result = await fetching
    if (origin === 'fetched') this.runtime.keep(id, origin)
    return result
  }

  private async fetchFromPeers (id: string, alsoAsk: readonly string[], origin: Exclude<ModelOrigin, 'compiled'>): Promise<CompileResult> {
    const peers = [...new Set([...this.holdersOf(id).reverse(), ...alsoAsk])]
    if (peers.length === 0) throw new UnknownModelError(id)
    let lastError: Error | undefined
    for (const peer of peers) {
      try {
        const { file, name } = await this.download(id, peer, origin === 'standby'
          ? { bytes: this.maxStandbyBytes, key: 'remoteWork.maxModelBytes' }
          : { bytes: this.maxModelBytes, key: 'models.maxModelBytes' })
        try {
          // A standby copy is only stored (hash-checked above): compiled when its work lands here, if ever.
          return origin === 'standby' ? this.runtime.store(file, { name, origin }) : await this.runtime.compile(file, { name, origin })
        } finally {
          await rm(file, { force: true })
        }
      } catch (err) {
        lastError = err as Error
        if (err instanceof RefusedFetch) this.metrics?.inc(REJECTED_METRIC, { topic: MODEL_FETCH_PROTOCOL, reason: err.reason })
        this.log.warn({ model: id, peer, err: lastError.message }, 'fetching a model from a peer failed')
      }
    }
    throw new ModelError(`no peer could provide model ${id}: ${lastError?.message ?? 'unknown error'}`, { cause: lastError })
  }

  /**
   * Downloads a model into a temporary file: refused before a byte is written when the peer announces more than
   * the cap or than the disk can take, cut off when it sends more than it announced or stays silent, flushed to
   * the disk and checked against its hash before it is renamed into place. Nothing but a whole, verified file is
   * ever left behind.
   */
  private async download (id: string, peer: string, cap: { bytes: number, key: string }): Promise<{ file: string, name: string }> {
    // The whole fetch has FETCH_TIMEOUT_MS; once the size is known, the transfer's own deadline (a minimum pace).
    let deadline = AbortSignal.timeout(FETCH_TIMEOUT_MS)
    const step = (): AbortSignal => AbortSignal.any([deadline, AbortSignal.timeout(this.idleTimeoutMs)])
    const stream = await this.node.dialProtocol(peerIdFromString(peer), MODEL_FETCH_PROTOCOL, { signal: step() })
    const done = join(this.modelsDir, `${id}.fetched.onnx`)
    const part = temporaryPath(done)
    let file: Awaited<ReturnType<typeof open>> | undefined
    try {
      const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
      const read = async (): Promise<Uint8Array> => {
        const waiting = step()
        try {
          return (await lp.read({ signal: waiting })).subarray()
        } catch (err) {
          if (!waiting.aborted) throw err
          if (deadline.aborted) throw new RefusedFetch('too-slow', 'it did not send the model within its deadline (64 KiB/s at least)')
          throw new RefusedFetch('stalled', `it sent nothing for ${this.idleTimeoutMs} ms`)
        }
      }
      await lp.write(modelFetchRequestCodec.encode({ v: 1, id }), { signal: step() })
      const header = modelFetchHeaderCodec.decode(await read())
      if (!header.ok) throw new RefusedFetch('bad-answer', `its answer was ${header.reason}: ${header.detail}`)
      if (!header.value.ok) throw new Error(`it says: ${header.value.error}`)
      const size = header.value.size
      if (size > cap.bytes) throw new RefusedFetch('too-large', `it offers ${size} bytes, more than ${cap.key} (${cap.bytes})`)
      deadline = AbortSignal.any([deadline, AbortSignal.timeout(transferDeadlineMs(size))])
      const disk = await statfs(this.modelsDir)
      const free = disk.bavail * disk.bsize
      if (free < size + this.diskMarginBytes) throw new RefusedFetch('no-disk-space', `${size} bytes would leave less than ${this.diskMarginBytes} bytes free (${free} free)`)
      file = await open(part, 'w', 0o640)
      const hash = createHash('sha256')
      let received = 0
      for (let chunks = 1; received < size; chunks++) {
        const chunk = await read()
        // Chunks are whole (MODEL_CHUNK_BYTES) but the last: empty or short ones would cost a write and a loop
        // each, and a flood of them stalls the event loop and fills memory.
        const expected = Math.min(MODEL_CHUNK_BYTES, size - received)
        if (chunk.length > size - received) throw new RefusedFetch('oversized', `it sent more than the ${size} bytes it announced`)
        if (chunk.length !== expected) throw new RefusedFetch('bad-chunk', `it sent a chunk of ${chunk.length} bytes where the protocol has ${expected}`)
        received += chunk.length
        hash.update(chunk)
        await file.write(chunk)
        if (chunks % MODEL_WINDOW_CHUNKS === 0 && received < size) await lp.write(modelFetchMoreCodec.encode({ v: 1, more: true }), { signal: step() })
      }
      await stream.close({ signal: step() })
      const digest = hash.digest('hex')
      if (digest !== id) throw new RefusedFetch('hash-mismatch', `the bytes it sent hash to ${digest.slice(0, 12)}…, not ${id.slice(0, 12)}…`)
      await file.sync()
      await file.close()
      file = undefined
      await rename(part, done)
      syncDir(this.modelsDir)
      this.log.info({ model: id, peer, bytes: received }, 'model fetched')
      return { file: done, name: header.value.name }
    } catch (err) {
      stream.abort(err as Error)
      await file?.close().catch(() => {})
      await rm(part, { force: true })
      throw err
    }
  }

  private readonly onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const whole = AbortSignal.timeout(SERVE_TIMEOUT_MS)
    // Each step has the idle timeout too: a peer that asks and never reads must not hold one of the few streams.
    let signal = whole
    const step = (): void => { signal = AbortSignal.any([whole, AbortSignal.timeout(this.idleTimeoutMs)]) }
    try {
      step()
      const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
      const request = modelFetchRequestCodec.decode((await lp.read({ signal })).subarray())
      if (!request.ok) throw new Error(`request ${request.reason}: ${request.detail}`)
      const model = this.runtime.lookup(request.value.id)
      if (model === undefined || model.sizeBytes > MAX_MODEL_BYTES) {
        await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: false, error: `model ${request.value.id} is not registered here` }), { signal })
        await stream.close({ signal })
        return
      }
      await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: true, name: model.name, size: model.sizeBytes }), { signal })
      let sent = 0
      for await (const chunk of createReadStream(model.file, { highWaterMark: MODEL_CHUNK_BYTES })) {
        if (sent > 0 && sent % MODEL_WINDOW_CHUNKS === 0) {
          step()
          const more = modelFetchMoreCodec.decode((await lp.read({ signal })).subarray())
          if (!more.ok) throw new Error(`the receiver's request for more was ${more.reason}: ${more.detail}`)
        }
        step()
        await lp.write(chunk as Buffer, { signal })
        sent++
      }
      await stream.close({ signal })
      this.log.info({ model: model.id, peer: connection.remotePeer.toString() }, 'model served')
    } catch (err) {
      this.log.debug({ err: (err as Error).message, peer: connection.remotePeer.toString() }, 'serving a model failed')
      stream.abort(err as Error)
    }
  }
}
