import { EventEmitter } from 'node:events'
import type { Decision, DecisionOutcome } from '../../protocols/decisions.ts'
import { credentialRefusal } from '../../media/camera-credentials.ts'
import type { CameraCredentials } from '../../media/camera-credentials.ts'
import type { RemoteWorkAccepts, WorkItem } from '../../protocols/work.ts'
import type { UnableReason } from '../../protocols/health.ts'
import { remoteWorkRefusal } from '../../protocols/remote-work-policy.ts'
import type { RemoteWorkFacts } from '../../protocols/remote-work-policy.ts'

/**
 * How long a box keeps saying it cannot run work after the work left it: long enough that the coordinator does not
 * send it straight back, short enough that a box whose device came back is tried again.
 */
export const UNABLE_MEMORY_MS = 10 * 60_000

/** Why a decision to run work was refused, as counted (`noodle_gossip_rejected_total{reason}` on the decisions topic). */
export type WorkRefusal = 'refused-work' | 'credentials-host' | 'duplicate-work'

export interface WorkEvents {
  /** The set of work this node runs changed. */
  change: []
  /** What this node advertises of its own work changed (a model file was compiled and is now named by id). */
  advertised: []
}

/**
 * The work on this node: what is configured here (its home), and what it runs now. At start it runs its own
 * work, where the data is; the coordinator's decisions then move work on and off. The capture and inference
 * components follow `running()`.
 */
export class WorkRegistry extends EventEmitter<WorkEvents> {
  readonly configured: readonly WorkItem[]
  /** This box's `remoteWork` policy, and the cameras it has credentials for: what it runs for other homes. */
  readonly accepts: RemoteWorkAccepts
  private readonly selfId: string
  private readonly credentials: CameraCredentials
  /** Work id → the item and its home. One work id runs here for one home at a time. */
  private readonly active = new Map<string, { item: WorkItem, home: string }>()
  /** Work id → the id of the model compiled from the file its item names. */
  private readonly compiledModels = new Map<string, string>()
  /** Work that cannot run here as it should, with why; `until` is set once it stopped here (UNABLE_MEMORY_MS). */
  private readonly unable = new Map<string, { why: UnableReason, until?: number }>()
  private readonly now: () => number

  constructor (components: { selfId: string, configured: readonly WorkItem[], accepts: RemoteWorkAccepts, credentials?: CameraCredentials, now?: () => number }) {
    super()
    this.now = components.now ?? Date.now
    this.selfId = components.selfId
    this.configured = components.configured
    this.accepts = components.accepts
    this.credentials = components.credentials ?? new Map()
  }

  start (): void {
    for (const item of this.configured) this.active.set(item.id, { item, home: this.selfId })
    if (this.configured.length > 0) this.emit('change')
  }

  stop (): void {
    this.active.clear()
  }

  /**
   * The work configured here as other nodes are told of it: a model named by a file path on this box is named by
   * its id once compiled, so whichever node the work moves to can fetch it from the mesh.
   */
  advertised (): WorkItem[] {
    return this.configured.map((item) => {
      const model = this.compiledModels.get(item.id)
      return model === undefined ? item : { ...item, model }
    })
  }

  /** The model file of a work item configured here was compiled into `modelId`. */
  modelCompiled (workId: string, modelId: string): void {
    if (!this.configured.some((item) => item.id === workId) || this.compiledModels.get(workId) === modelId) return
    this.compiledModels.set(workId, modelId)
    this.emit('advertised')
  }

  /**
   * Work `id` cannot run here (`why`: its model cannot run at all, or not at its fps), or can again (null). The
   * beacon says so, and the coordinator places it on another box that may run it.
   */
  cannotRun (id: string, why: UnableReason | null): void {
    const known = this.unable.get(id)
    if (why === null ? known === undefined : known?.why === why && known.until === undefined) return
    if (why === null) this.unable.delete(id)
    else this.unable.set(id, { why })
    this.emit('advertised')
  }

  /** What the beacon lists as `unable`: work failing here now, and work that left because it failed, for a while. */
  unableList (): Array<{ work: string, why: UnableReason }> {
    const now = this.now()
    for (const [id, u] of this.unable) if (u.until !== undefined && u.until <= now) this.unable.delete(id)
    return [...this.unable].slice(0, 32).map(([work, u]) => ({ work, why: u.why }))
  }

  /** Work stops here: what this box said it cannot run of it is said a while longer (UNABLE_MEMORY_MS). */
  private left (id: string): void {
    this.active.delete(id)
    const unable = this.unable.get(id)
    if (unable !== undefined) unable.until = this.now() + UNABLE_MEMORY_MS
  }

  running (): WorkItem[] {
    return [...this.active.values()].map((w) => w.item)
  }

  /** Whether work `id` runs here for another home (so its source and model came from the mesh). */
  isRemote (id: string): boolean {
    const home = this.active.get(id)?.home
    return home !== undefined && home !== this.selfId
  }

  runningIds (): string[] {
    return [...this.active.keys()]
  }

  /**
   * Carries out a decision addressed to this node (already checked against the term, and its home against the
   * home's beacon). Work homed elsewhere runs only within this box's own policy, and never with this box's
   * credentials for a host they are not for. Work is the pair (home, id): a stop for another home's work of the
   * same id stops nothing, and a run for it is refused while this one runs. `reason` says why a run was refused.
   */
  apply (decision: Decision, facts: RemoteWorkFacts = { needsCredentials: false }): { outcome: DecisionOutcome, detail: string, reason?: WorkRefusal } {
    const { work, home } = decision
    const running = this.active.get(work.id)
    if (decision.action === 'stop') {
      const had = running !== undefined && running.home === home
      if (had) {
        this.left(work.id)
        this.emit('change')
      }
      return { outcome: 'applied', detail: had ? 'stopped' : 'was not running' }
    }
    if (home !== this.selfId) {
      const refusal = remoteWorkRefusal(this.accepts, work, facts)
      if (refusal !== null) return { outcome: 'rejected', detail: refusal, reason: 'refused-work' }
      const credentials = work.source === undefined ? null : credentialRefusal(work.source, this.credentials.get(work.id))
      if (credentials !== null) return { outcome: 'rejected', detail: `camera ${work.id}: ${credentials}`, reason: 'credentials-host' }
    }
    if (running !== undefined) {
      if (running.home === home) return { outcome: 'applied', detail: 'already running' }
      return { outcome: 'rejected', detail: `work ${work.id} already runs here for another home (${running.home})`, reason: 'duplicate-work' }
    }
    this.active.set(work.id, { item: work, home })
    // Sent back (nowhere else could take it): it is tried afresh.
    this.unable.delete(work.id)
    this.emit('change')
    return { outcome: 'applied', detail: 'started' }
  }

  /**
   * Stops the work this node runs for homes that are no longer members (`isMember` false: reaped, or left): nobody
   * is left to stop it otherwise, since the coordinator places only the work of members it lists.
   */
  forgetHomeless (isMember: (home: string) => boolean): string[] {
    const dropped = [...this.active].filter(([, w]) => w.home !== this.selfId && !isMember(w.home)).map(([id]) => id)
    for (const id of dropped) this.left(id)
    if (dropped.length > 0) this.emit('change')
    return dropped
  }
}
