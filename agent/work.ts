import { EventEmitter } from 'node:events'
import type { Decision, DecisionOutcome } from '../protocols/decisions.ts'
import type { WorkItem } from '../protocols/work.ts'

export interface WorkEvents {
  /** The set of work this node runs changed. */
  change: []
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
