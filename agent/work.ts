import { EventEmitter } from 'node:events'
import type { Decision, DecisionOutcome } from '../protocols/decisions.ts'
import type { RemoteWorkAccepts, WorkItem } from '../protocols/work.ts'
import { remoteWorkRefusal } from './remote-work-policy.ts'
import type { RemoteWorkFacts } from './remote-work-policy.ts'

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
  /** Work id → the item and its home. */
  private readonly active = new Map<string, { item: WorkItem, home: string }>()
  /** Work id → the id of the model compiled from the file its item names. */
  private readonly compiledModels = new Map<string, string>()

  constructor (components: { selfId: string, configured: readonly WorkItem[], accepts: RemoteWorkAccepts }) {
    super()
    this.selfId = components.selfId
    this.configured = components.configured
    this.accepts = components.accepts
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
   * home's beacon). Work homed elsewhere runs only within this box's own policy.
   */
  apply (decision: Decision, facts: RemoteWorkFacts = { needsCredentials: false }): { outcome: DecisionOutcome, detail: string } {
    const { work } = decision
    if (decision.action === 'stop') {
      const had = this.active.delete(work.id)
      if (had) this.emit('change')
      return { outcome: 'applied', detail: had ? 'stopped' : 'was not running' }
    }
    const refusal = decision.home === this.selfId ? null : remoteWorkRefusal(this.accepts, work, facts)
    if (refusal !== null) return { outcome: 'rejected', detail: refusal }
    if (this.active.has(work.id)) return { outcome: 'applied', detail: 'already running' }
    this.active.set(work.id, { item: work, home: decision.home })
    this.emit('change')
    return { outcome: 'applied', detail: 'started' }
  }
}
