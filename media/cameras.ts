import type { Database as DB, Statement } from 'better-sqlite3'
import type { Logger } from '../common/logger.ts'
import { MODEL_ID } from '../protocols/models.ts'
import { redactCredentials } from '../common/text.ts'
import type { RemoteWorkAccepts, WorkItem } from '../protocols/work.ts'
import type { ModelExchange } from '../runtime/model-exchange.ts'
import type { ModelRuntime } from '../runtime/model-runtime.ts'
import type { HeavyModules } from '../runtime/loader.ts'
import { CameraPipeline } from './camera.ts'
import type { CameraCredentials } from './camera-credentials.ts'
import { withCredentials } from './camera-credentials.ts'
import type { CameraResult, CameraStats } from './camera.ts'
import { planDetector } from './detector/plan.ts'
import { readOnnxMetadata } from '../runtime/onnx-file.ts'
import { DEFAULT_MOTION, DetectorWireSchema } from '../protocols/work.ts'

/** A camera this node runs, as `noodle cameras` lists it. */
export interface CameraView extends Partial<CameraStats> {
  camera: string
  /** starting (its model is being compiled or fetched), running, or failed (with why). */
  state: 'starting' | 'running' | 'failed'
  error: string | null
}

/** The work this node runs (the agent's WorkRegistry), declared here so media/ needs nothing of agent/. */
export interface CameraWork {
  readonly accepts: Pick<RemoteWorkAccepts, 'maxModelBytes'>
  running (): readonly WorkItem[]
  /** Whether a work item runs here for another home. */
  isRemote (id: string): boolean
  /** A work item's model file was compiled here, as this model id. */
  modelCompiled (workId: string, modelId: string): void
  on (event: 'change', listener: () => void): unknown
  off (event: 'change', listener: () => void): unknown
}

/** A camera without a `detector` section: everything from the model's signature. */
const DEFAULT_DETECTOR = DetectorWireSchema.parse({})

/** Detections of one frame the store keeps at most (the table keeps a million rows in all). */
export const MAX_STORED_DETECTIONS = 32

/** How long a camera whose model could not be found waits before trying again. */
const RETRY_MS = 10_000

/**
 * Runs a camera pipeline for every camera work item this node runs now (its own, and what the coordinator
 * placed here), and stops it when the work moves away. A camera's model is compiled from its file, taken from
 * the registry, or fetched from a member that has it. Results go to `onResult` (gossip, MQTT) and the store.
 */
export class CameraManager {
  private readonly work: CameraWork
  private readonly runtime: ModelRuntime
  private readonly exchange: ModelExchange
  private readonly db: DB
  private readonly log: Logger
  private readonly onResult: (result: CameraResult, item: WorkItem) => void
  private readonly onStopped: (camera: string) => void
  private readonly credentials: CameraCredentials
  private readonly modules: Pick<HeavyModules, 'require'> | undefined
  private readonly cameras = new Map<string, { item: WorkItem, pipeline?: CameraPipeline, state: CameraView['state'], error: string | null, retry?: NodeJS.Timeout }>()
  /** The detections insert (DETECTION_TABLES), compiled on the first result. */
  private insert: Statement<[string, number, string, number, number, number, number, number]> | undefined

  constructor (components: {
    work: CameraWork, runtime: ModelRuntime, exchange: ModelExchange, db: DB, log: Logger, credentials: CameraCredentials
    /** Each result, with the camera's work item; and a camera that stopped here (its events end). */
    onResult: (result: CameraResult, item: WorkItem) => void
    onStopped?: (camera: string) => void
    /** Whether node-av is installed: without it (a core release) a camera fails at once, named, never half-starts. */
    modules?: Pick<HeavyModules, 'require'>
  }) {
    this.work = components.work
    this.modules = components.modules
    this.credentials = components.credentials
    this.runtime = components.runtime
    this.exchange = components.exchange
    this.db = components.db
    this.log = components.log
    this.onResult = components.onResult
    this.onStopped = components.onStopped ?? (() => {})
  }

  private readonly sync = (): void => {
    const wanted = new Map(this.work.running().filter((w) => w.kind === 'camera' && w.source !== undefined && w.model !== undefined).map((w) => [w.id, w]))
    for (const [id, camera] of this.cameras) {
      if (!wanted.has(id)) void this.stopCamera(id, camera)
    }
    for (const [id, item] of wanted) {
      if (!this.cameras.has(id)) {
        this.cameras.set(id, { item, state: 'starting', error: null })
        void this.startCamera(id)
      }
    }
  }

  start (): void {
    this.work.on('change', this.sync)
    this.sync()
  }

  async stop (): Promise<void> {
    this.work.off('change', this.sync)
    await Promise.all([...this.cameras].map(async ([id, camera]) => { await this.stopCamera(id, camera) }))
  }

  list (): CameraView[] {
    return [...this.cameras].map(([id, c]) => {
      const stats = c.pipeline?.stats()
      const error = c.error ?? stats?.lastError ?? null
      return { ...stats, camera: id, source: c.item.source, state: c.state, error: error === null ? null : redactCredentials(error) }
    })
  }

  private async startCamera (id: string): Promise<void> {
    const camera = this.cameras.get(id)
    if (camera === undefined) return
    const { item } = camera
    try {
      this.modules?.require('media', `camera ${id}`)
      const model = item.model as string
      const remote = this.work.isRemote(id)
      // Work from another home names its model by id only: a path would name a file on this box.
      if (remote && !MODEL_ID.test(model)) throw new Error('work from another home must name its model by id')
      // A path is compiled here; an id is looked up, or fetched from a member that announced it.
      let modelId: string
      if (model.startsWith('/') || model.startsWith('.')) {
        modelId = (await this.runtime.compile(model)).id
        this.work.modelCompiled(id, modelId)
      } else {
        // Fetched for work from another home, it is a standby copy: collected once no work names it.
        modelId = this.runtime.lookup(model)?.id ?? (await this.exchange.fetch(model, [], remote ? 'standby' : 'fetched')).id
      }
      if (this.cameras.get(id) !== camera) return // stopped meanwhile
      const { maxModelBytes } = this.work.accepts
      const size = this.runtime.lookup(modelId)?.sizeBytes ?? 0
      if (remote && size > maxModelBytes) throw new Error(`its model is ${size} bytes, over remoteWork.maxModelBytes (${maxModelBytes})`)
      // A standby copy is compiled now that its camera runs here; its inputs are known from then on.
      const record = await this.runtime.prepare(modelId)
      const metadata = await readOnnxMetadata(record.file)
      if (this.cameras.get(id) !== camera) return
      // What the model takes and gives, read off its signature; a model no decoder knows fails here, named.
      const detector = planDetector({ ...record, metadata }, item.detector ?? DEFAULT_DETECTOR, { size: item.size, channels: item.channels })
      const pipeline = new CameraPipeline({
        options: {
          id,
          source: item.source as string,
          url: withCredentials(item.source as string, this.credentials.get(id)),
          model: modelId,
          detector,
          hwaccel: item.hwaccel,
          motion: item.motion ?? DEFAULT_MOTION,
          fps: item.fps,
          loop: true,
          paced: true
        },
        runner: this.runtime,
        log: this.log,
        onResult: (result) => { this.record(result, item) }
      })
      camera.pipeline = pipeline
      camera.state = 'running'
      camera.error = null
      pipeline.start()
      this.log.info({ camera: id, source: item.source, model: modelId, detector: detector.variant, input: detector.input }, 'camera started')
    } catch (err) {
      camera.state = 'failed'
      camera.error = (err as Error).message
      this.log.warn({ camera: id, err: camera.error, retryInMs: RETRY_MS }, 'camera could not start')
      camera.retry = setTimeout(() => { void this.startCamera(id) }, RETRY_MS)
    }
  }

  private async stopCamera (id: string, camera: { pipeline?: CameraPipeline, retry?: NodeJS.Timeout }): Promise<void> {
    this.cameras.delete(id)
    clearTimeout(camera.retry)
    await camera.pipeline?.stop()
    this.onStopped(id)
    this.log.info({ camera: id }, 'camera stopped')
  }

  private record (result: CameraResult, item: WorkItem): void {
    if (result.detections.length > 0) {
      try {
        this.db.transaction(() => {
          this.insert ??= this.db.prepare('INSERT INTO detections (camera, at, label, score, x1, y1, x2, y2) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          // The best of a frame: a model that finds hundreds a frame would fill the table's row cap in seconds.
          const best = result.detections.length <= MAX_STORED_DETECTIONS ? result.detections : [...result.detections].sort((a, b) => b.score - a.score).slice(0, MAX_STORED_DETECTIONS)
          for (const d of best) this.insert.run(result.camera, result.at, d.label, d.score, ...d.box)
        })()
      } catch (err) {
        this.log.warn({ err, camera: result.camera }, 'storing detections failed')
      }
    }
    this.onResult(result, item)
  }
}
