import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { ModelError, UnknownModelError } from '../agent/errors.ts'
import type { Logger } from '../agent/logger.ts'
import type { MeshNode } from '../agent/mesh.ts'
import {
  MAX_MODEL_BYTES, MODEL_CHUNK_BYTES, MODEL_FETCH_PROTOCOL, MODEL_WINDOW_CHUNKS, modelFetchHeaderCodec, modelFetchMoreCodec, modelFetchRequestCodec
} from '../protocols/model-fetch.ts'
import type { ModelCompiled } from '../protocols/models.ts'
import type { CompileResult, ModelRuntime } from './model-runtime.ts'

/** How long one fetch may take in all (a large model over a slow link), and how long a peer may stay silent. */
const FETCH_TIMEOUT_MS = 10 * 60_000
const SERVE_TIMEOUT_MS = 10 * 60_000

/**
 * Models between nodes: serves the models registered here to peers, remembers which peers announced which
 * models, and fetches a model from one of them (verifying its hash) so it can be compiled and run here.
 */
export class ModelExchange {
  private readonly node: MeshNode
  private readonly runtime: ModelRuntime
  private readonly modelsDir: string
  private readonly log: Logger
  /** Model id → peers that announced it, most recent last. */
  private readonly holders = new Map<string, string[]>()
  private readonly fetching = new Map<string, Promise<CompileResult>>()

  constructor (components: { node: MeshNode, runtime: ModelRuntime, modelsDir: string, log: Logger }) {
    this.node = components.node
    this.runtime = components.runtime
    this.modelsDir = components.modelsDir
    this.log = components.log
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
    this.holders.set(model.id, peers.slice(-16))
  }

  /** Peers known to have a model. */
  holdersOf (id: string): string[] {
    return [...this.holders.get(id) ?? []]
  }

  /**
   * Makes sure a model is here: fetched from a peer that has it when it is not, then compiled. `alsoAsk` names
   * peers likely to have it though they were not heard announcing it (the home of the work that uses it). One
   * fetch of a model at a time: a second caller waits for the first.
   */
  async fetch (id: string, alsoAsk: readonly string[] = []): Promise<CompileResult> {
    const local = this.runtime.described(id)
    if (local !== undefined) return local
    const running = this.fetching.get(id)
    if (running !== undefined) return await running
    const fetching = this.fetchFromPeers(id, alsoAsk).finally(() => { this.fetching.delete(id) })
    this.fetching.set(id, fetching)
    return await fetching
  }

  private async fetchFromPeers (id: string, alsoAsk: readonly string[]): Promise<CompileResult> {
    const peers = [...new Set([...this.holdersOf(id).reverse(), ...alsoAsk])]
    if (peers.length === 0) throw new UnknownModelError(id)
    let lastError: Error | undefined
    for (const peer of peers) {
      try {
        const { file, name } = await this.download(id, peer)
        try {
          return await this.runtime.compile(file, { name })
        } finally {
          await rm(file, { force: true })
        }
      } catch (err) {
        lastError = err as Error
        this.log.warn({ model: id, peer, err: lastError.message }, 'fetching a model from a peer failed')
      }
    }
    throw new ModelError(`no peer could provide model ${id}: ${lastError?.message ?? 'unknown error'}`)
  }

  private async download (id: string, peer: string): Promise<{ file: string, name: string }> {
    const signal = AbortSignal.timeout(FETCH_TIMEOUT_MS)
    const stream = await this.node.dialProtocol(peerIdFromString(peer), MODEL_FETCH_PROTOCOL, { signal })
    const part = join(this.modelsDir, `${id}.part`)
    const file = await open(part, 'w', 0o640)
    try {
      const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
      await lp.write(modelFetchRequestCodec.encode({ v: 1, id }), { signal })
      const header = modelFetchHeaderCodec.decode((await lp.read({ signal })).subarray())
      if (!header.ok) throw new Error(`its answer was ${header.reason}: ${header.detail}`)
      if (!header.value.ok) throw new Error(`it says: ${header.value.error}`)
      const hash = createHash('sha256')
      let received = 0
      for (let chunks = 1; received < header.value.size; chunks++) {
        const chunk = (await lp.read({ signal })).subarray()
        received += chunk.length
        if (received > header.value.size) throw new Error(`it sent more than the ${header.value.size} bytes it announced`)
        hash.update(chunk)
        await file.write(chunk)
        if (chunks % MODEL_WINDOW_CHUNKS === 0 && received < header.value.size) await lp.write(modelFetchMoreCodec.encode({ v: 1, more: true }), { signal })
      }
      await stream.close({ signal })
      const digest = hash.digest('hex')
      if (digest !== id) throw new Error(`the bytes it sent hash to ${digest.slice(0, 12)}…, not ${id.slice(0, 12)}…`)
      await file.close()
      const done = join(this.modelsDir, `${id}.fetched.onnx`)
      await rename(part, done)
      this.log.info({ model: id, peer, bytes: received }, 'model fetched')
      return { file: done, name: header.value.name }
    } catch (err) {
      stream.abort(err as Error)
      await file.close().catch(() => {})
      await rm(part, { force: true })
      throw err
    }
  }

  private readonly onStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const signal = AbortSignal.timeout(SERVE_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: MODEL_CHUNK_BYTES })
      const request = modelFetchRequestCodec.decode((await lp.read({ signal })).subarray())
      if (!request.ok) throw new Error(`request ${request.reason}: ${request.detail}`)
      const model = this.runtime.find(request.value.id)
      if (model === undefined || model.sizeBytes > MAX_MODEL_BYTES) {
        await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: false, error: `model ${request.value.id} is not registered here` }), { signal })
        await stream.close({ signal })
        return
      }
      await lp.write(modelFetchHeaderCodec.encode({ v: 1, ok: true, name: model.name, size: model.sizeBytes }), { signal })
      let sent = 0
      for await (const chunk of createReadStream(model.file, { highWaterMark: MODEL_CHUNK_BYTES })) {
        if (sent > 0 && sent % MODEL_WINDOW_CHUNKS === 0) {
          const more = modelFetchMoreCodec.decode((await lp.read({ signal })).subarray())
          if (!more.ok) throw new Error(`the receiver's request for more was ${more.reason}: ${more.detail}`)
        }
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
