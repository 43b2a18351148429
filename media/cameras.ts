import type { Database as DB, Statement } from 'better-sqlite3'
import type { Logger } from '../common/logger.ts'
import { MODEL_ID } from '../protocols/models.ts'
import { redactCredentials } from '../common/text.ts'
import { ModelError } from '../common/errors.ts'
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
import type { UnableReason } from '../protocols/health.ts'
import type { ModelRunner } from './camera.ts'

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
  /** A camera cannot run here as it should (its detector cannot run, or not at its fps), or can again (null). */
  cannotRun (workId: string, why: UnableReason | null): void
  on (event: 'change', listener: () => void): unknown
  off (event: 'change', listener: () => void): unknown
}

/** A camera this node runs, and how its inferences have gone. */
interface ManagedCamera {
  item: WorkItem
  pipeline?: CameraPipeline
  state: CameraView['state']
  error: string | null
  retry?: NodeJS.Timeout
  /** Inferences failed in a row; whether its last start failed for its model (and it said it cannot run). */
  failures: number
  startFailed: boolean
  /** Frames decoded, skipped and held still at the last pace check, and checks in a row that found it lagging. */
  pace: { framesIn: number, skipped: number, stillFrames: number, slowChecks: number }
}

/** A camera without a `detector` section: everything from the model's signature. */
const DEFAULT_DETECTOR = DetectorWireSchema.parse({})

/** Detections of one frame the store keeps at most (the table keeps a million rows in all). */
export const MAX_STORED_DETECTIONS = 32

/** How long a camera whose model could not be found waits before trying again. */
const RETRY_MS = 10_000
/**
 * Inferences that fail in a row before a camera says its detector cannot run here: more than the runtime takes to
 * step down from a failing provider (3), so a box with a second provider keeps its camera.
 */
export const CANNOT_RUN_AFTER = 10
/** How often a camera's pace is checked, and for how many checks in a row it must lag before it is called too slow. */
const PACE_CHECK_MS = 10_000
const SLOW_CHECKS = 6
/** The share of decoded frames skipped (the model still busy) over which a camera lags, and under which it keeps up. */
const SLOW_SKIPPED_SHARE = 0.5
const KEEPS_UP_SKIPPED_SHARE = 0.2

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
  private readonly cameras = new Map<string, ManagedCamera>()
  private readonly pace: { checkMs: number, checks: number }
  private paceTimer: NodeJS.Timeout | undefined
  /** The detections insert (DETECTION_TABLES), compiled on the first result. */
  private insert: Statement<[string, number, string, number, number, number, number, number]> | undefined

  constructor (components: {
    work: CameraWork, runtime: ModelRuntime, exchange: ModelExchange, db: DB, log: Logger, credentials: CameraCredentials
    /** Each result, with the camera's work item; and a camera that stopped here (its events end). */
    onResult: (result: CameraResult, item: WorkItem) => void
    onStopped?: (camera: string) => void
    /** Whether node-av is installed: without it (a core release) a camera fails at once, named, never half-starts. */
    modules?: Pick<HeavyModules, 'require'>
    /** How often a camera's pace is checked, and how many lagging checks in a row make it too slow (tests shorten them). */
    pace?: { checkMs: number, checks: number }
  }) {
    this.pace = components.pace ?? { checkMs: PACE_CHECK_MS, checks: SLOW_CHECKS }
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
        this.cameras.set(id, { item, state: 'starting', error: null, failures: 0, startFailed: false, pace: { framesIn: 0, skipped: 0, stillFrames: 0, slowChecks: 0 } })
        void this.startCamera(id)
      }
    }
  }

  start (): void {
    this.work.on('change', this.sync)
    this.sync()
    this.paceTimer = setInterval(() => { this.checkPace() }, this.pace.checkMs).unref()
  }

  async stop (): Promise<void> {
    this.work.off('change', this.sync)
    clearInterval(this.paceTimer)
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
    // How far the start got: only a model onnxruntime cannot load (`load`) is a reason to move the camera.
    let stage: 'find' | 'load' | 'plan' = 'find'
    try {
      this.modules?.require('media', `camera ${id}`)
      const model = item.model as string
      const remote = this.work.isRemote(id)
      // Work from another home names its model by id only: a path would name a file on this box.
      if (remote && !MODEL_ID.test(model)) throw new Error('work from another home must name its model by id')
      // A path is compiled here; an id is looked up, or fetched from a member that announced it.
      let modelId: string
      if (model.startsWith('/') || model.startsWith('.')) {
        stage = 'load'
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
      stage = 'load'
      const record = await this.runtime.prepare(modelId)
      stage = 'plan'
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
        runner: this.watchedRunner(id, camera),
        log: this.log,
        onResult: (result) => { this.record(result, item) }
      })
      camera.pipeline = pipeline
      camera.state = 'running'
      camera.error = null
      pipeline.start()
      // It started: a start that failed before is taken back (its runs say it again if they fail).
      if (camera.startFailed) this.work.cannotRun(id, null)
      camera.startFailed = false
      this.log.info({ camera: id, source: item.source, model: modelId, detector: detector.variant, input: detector.input }, 'camera started')
    } catch (err) {
      camera.state = 'failed'
      camera.error = (err as Error).message
      // onnxruntime cannot load its model here: another box may. (A model not fetched yet, at start before the
      // members are met, is no reason to move: it is tried again.)
      if (stage === 'load' && err instanceof ModelError && this.cameras.get(id) === camera) {
        camera.startFailed = true
        this.work.cannotRun(id, 'cannot-run')
      }
      this.log.warn({ camera: id, err: camera.error, retryInMs: RETRY_MS }, 'camera could not start')
      camera.retry = setTimeout(() => { void this.startCamera(id) }, RETRY_MS)
    }
  }

  /**
   * The runtime, as one camera sees it: inferences that keep failing (every provider here failed, the model cannot
   * run) make the camera say it cannot run here, so the coordinator moves it; one that succeeds takes that back.
   */
  private watchedRunner (id: string, camera: ManagedCamera): ModelRunner {
    return {
      run: async (model, feeds) => {
        try {
          const result = await this.runtime.run(model, feeds)
          // A run that ends after the camera stopped says nothing of where it runs now.
          if (camera.failures >= CANNOT_RUN_AFTER && this.cameras.get(id) === camera) this.work.cannotRun(id, null)
          camera.failures = 0
          return result
        } catch (err) {
          if (++camera.failures === CANNOT_RUN_AFTER && this.cameras.get(id) === camera) {
            this.log.error({ camera: id, err: (err as Error).message, failures: camera.failures }, 'the camera\'s detector cannot run here: asking to be moved')
            this.work.cannotRun(id, 'cannot-run')
          }
          throw err
        }
      },
      recordRuns: (model, ms) => { this.runtime.recordRuns(model, ms) }
    }
  }

  /**
   * A camera whose model skips most frames for a minute (the box is too slow for its fps) says so, and the
   * coordinator moves it to a box that fits if there is one; it takes that back once it keeps up.
   */
  private checkPace (): void {
    for (const [id, camera] of this.cameras) {
      const stats = camera.pipeline?.stats()
      if (stats === undefined || camera.failures >= CANNOT_RUN_AFTER) continue
      // Over the same interval: frames decoded, and of them those skipped (the model busy) and those held back
      // (nothing moved). What was offered to the model is what was not held back; a mostly still interval says
      // nothing of the pace either way. (A source that restarted counts afresh: no decision this time.)
      const decoded = (stats.framesIn ?? 0) - camera.pace.framesIn
      const skipped = (stats.skipped ?? 0) - camera.pace.skipped
      const still = (stats.stillFrames ?? 0) - camera.pace.stillFrames
      camera.pace = { framesIn: stats.framesIn ?? 0, skipped: stats.skipped ?? 0, stillFrames: stats.stillFrames ?? 0, slowChecks: camera.pace.slowChecks }
      const offered = decoded - still
      if (decoded <= 0 || skipped < 0 || offered < (camera.item.fps ?? 1) * this.pace.checkMs / 1000 / 2) continue
      const share = skipped / offered
      if (share > SLOW_SKIPPED_SHARE) {
        if (++camera.pace.slowChecks === this.pace.checks) {
          this.log.warn({ camera: id, skippedShare: Math.round(share * 100) / 100, fps: camera.item.fps }, 'the camera\'s detector cannot keep up here: asking to be moved')
          this.work.cannotRun(id, 'too-slow')
        }
      } else if (share < KEEPS_UP_SKIPPED_SHARE) {
        if (camera.pace.slowChecks >= this.pace.checks) this.work.cannotRun(id, null)
        camera.pace.slowChecks = 0
      }
    }
  }

  private async stopCamera (id: string, camera: ManagedCamera): Promise<void> {
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
