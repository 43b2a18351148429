import { EventEmitter } from 'node:events'
import type { Decision, DecisionOutcome } from '../protocols/decisions.ts'
import type { WorkItem } from '../protocols/work.ts'

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
  private readonly selfId: string
  private readonly active = new Map<string, WorkItem>()
  /** Work id → the id of the model compiled from the file its item names. */
  private readonly compiledModels = new Map<string, string>()

  constructor (components: { selfId: string, configured: readonly WorkItem[] }) {
    super()
    this.selfId = components.selfId
    this.configured = components.configured
  }

  start (): void {
    for (const item of this.configured) this.active.set(item.id, item)
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
    return [...this.active.values()]
  }

  runningIds (): string[] {
    return [...this.active.keys()]
  }

  /** Carries out a decision addressed to this node (already checked against the term). */
  apply (decision: Decision): { outcome: DecisionOutcome, detail: string } {
    const { work } = decision
    if (decision.action === 'stop') {
      const had = this.active.delete(work.id)
      if (had) this.emit('change')
      return { outcome: 'applied', detail: had ? 'stopped' : 'was not running' }
    }
    if (work.pinned && decision.home !== this.selfId) {
      return { outcome: 'rejected', detail: 'the work is pinned to its home node' }
    }
    if (work.source?.startsWith('/dev/') === true && decision.home !== this.selfId) {
      return { outcome: 'rejected', detail: `${work.source} is a device on its home node` }
    }
    if (this.active.has(work.id)) return { outcome: 'applied', detail: 'already running' }
    this.active.set(work.id, work)
    this.emit('change')
    return { outcome: 'applied', detail: 'started' }
  }
}
