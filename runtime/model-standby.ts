import type { Logger } from '../common/logger.ts'
import type { HealthBeacon } from '../protocols/health.ts'
import { MODEL_ID } from '../protocols/models.ts'
import { remoteWorkRefusal } from '../protocols/remote-work-policy.ts'
import type { RemoteWorkAccepts, WorkItem } from '../protocols/work.ts'
import type { ModelExchange } from './model-exchange.ts'
import type { ModelRuntime } from './model-runtime.ts'

/** A model that could not be fetched is tried again after this long. */
const RETRY_AFTER_MS = 60_000
/** How long a standby copy no work names is kept, by default (models.standbyRetainMs). */
const RETAIN_MS = 3_600_000
/** Standby copies together, at most, by default (models.standbyMaxBytes). */
const MAX_BYTES = 2 * 1024 ** 3

/** A member as the standby reads it: who, whether alive, and the work its last beacon named (null: none yet). */
export interface StandbyMember {
  peerId: string
  state: string
  health: Pick<HealthBeacon, 'work' | 'accepts'> | null
}

/** The members of the mesh (the agent's Membership), declared here so runtime/ needs nothing of agent/. */
export interface MemberDirectory {
  list (): readonly StandbyMember[]
  on (event: 'change', listener: () => void): unknown
  off (event: 'change', listener: () => void): unknown
}

/**
 * Keeps a copy here of every model that mesh work which could move here runs, fetched while its home is alive:
 * when a node dies, the coordinator moves its cameras to another node, and that node must not need the dead
 * node's copy of the model. A copy is only checked against its hash and stored (ModelRuntime.store): it is
 * compiled, and onnxruntime loaded, when its work lands here. Models are small beside the frames they save (the PP-OCR detector is 4.7 MB);
 * a box short of disk turns this off (`models.standby: false`) and can then take over only work whose model
 * another live node still has. A copy kept here that no member's work has named for `retainMs` is deleted
 * again; models an operator compiled or fetched never are.
 */
export class ModelStandby {
  private readonly membership: MemberDirectory
  /** The work this box runs now, whatever its home: its models are never collected. */
  private readonly running: () => readonly WorkItem[]
  private readonly runtime: ModelRuntime
  private readonly exchange: ModelExchange
  private readonly selfId: string
  private readonly accelerators: number
  private readonly accepts: RemoteWorkAccepts
  private readonly intervalMs: number
  private readonly log: Logger
  private readonly retainMs: number
  private readonly maxBytes: number
  private readonly failedAt = new Map<string, number>()
  /** Standby copies no work names, since when. */
  private readonly unnamedSince = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private pass: Promise<void> | undefined
  private stopped = true

  constructor (components: {
    membership: MemberDirectory, running: () => readonly WorkItem[], runtime: ModelRuntime, exchange: ModelExchange, selfId: string, accelerators: number, accepts: RemoteWorkAccepts, intervalMs: number, log: Logger, retainMs?: number
    /** Standby copies together, at most (models.standbyMaxBytes): members' work must not fill this box's disk. */
    maxBytes?: number
  }) {
    this.membership = components.membership
    this.running = components.running
    this.runtime = components.runtime
    this.exchange = components.exchange
    this.selfId = components.selfId
    this.accelerators = components.accelerators
    this.accepts = components.accepts
    this.intervalMs = components.intervalMs
    this.log = components.log
    this.retainMs = components.retainMs ?? RETAIN_MS
    this.maxBytes = components.maxBytes ?? MAX_BYTES
  }

  start (): void {
    this.stopped = false
    this.membership.on('change', this.soon)
    this.timer = setInterval(this.soon, this.intervalMs)
    this.soon()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    this.membership.off('change', this.soon)
    await this.pass
  }

  /** Models that work elsewhere in the mesh runs and this node may be asked to take over, with who has them. */
  wanted (now = Date.now()): Array<{ id: string, home: string }> {
    const out = new Map<string, string>()
    for (const member of this.membership.list()) {
      if (member.peerId === this.selfId || member.state !== 'alive') continue
      for (const item of member.health?.work ?? []) {
        const id = item.model
        if (id === undefined || !MODEL_ID.test(id) || out.has(id) || !this.mayRun(item, member.health?.accepts.credentials.includes(item.id) === true)) continue
        if (now - (this.failedAt.get(id) ?? -Infinity) < RETRY_AFTER_MS) continue
        if (this.runtime.lookup(id) === undefined) out.set(id, member.peerId)
      }
    }
    return [...out].map(([id, home]) => ({ id, home }))
  }

  /** What WorkRegistry.apply (this box's remoteWork policy) and the placement would allow here. */
  private mayRun (item: WorkItem, needsCredentials: boolean): boolean {
    return remoteWorkRefusal(this.accepts, item, { needsCredentials }) === null && (item.accelerator !== 'required' || this.accelerators > 0)
  }

  private readonly soon = (): void => {
    if (this.stopped || this.pass !== undefined) return
    this.pass = this.fetchWanted()
      .then(async () => { await this.collect() })
      .catch((err: unknown) => { this.log.error({ err }, 'a standby pass failed') })
      .finally(() => { this.pass = undefined })
  }

  /**
   * Deletes the standby copies that no member's work (alive, suspect or dead: a dead member's work is what the
   * copies are for) has named for `retainMs`, and that no work running here uses (work from a home that left
   * the mesh runs on until the coordinator stops it). Returns the ids deleted.
   */
  async collect (now = Date.now()): Promise<string[]> {
    const named = new Set<string>()
    for (const member of this.membership.list()) for (const item of member.health?.work ?? []) if (item.model !== undefined) named.add(item.model)
    for (const item of this.running()) if (item.model !== undefined) named.add(item.model)
    const deleted: string[] = []
    for (const model of this.runtime.list()) {
      if (model.origin !== 'standby' || named.has(model.id)) {
        this.unnamedSince.delete(model.id)
        continue
      }
      const since = this.unnamedSince.get(model.id) ?? now
      this.unnamedSince.set(model.id, since)
      if (now - since < this.retainMs) continue
      await this.runtime.forget(model.id)
      this.unnamedSince.delete(model.id)
      deleted.push(model.id)
      this.log.info({ model: model.id, name: model.name }, 'a standby copy no work names any more was deleted')
    }
    return deleted
  }

  /** One model at a time: standby copies must not crowd out the work this box runs now. */
  private async fetchWanted (): Promise<void> {
    // Failures old enough to try again are forgotten: ids from beacons must not pile up here.
    for (const [id, at] of this.failedAt) if (Date.now() - at >= RETRY_AFTER_MS) this.failedAt.delete(id)
    for (const { id, home } of this.wanted()) {
      if (this.stopped) return
      const used = this.runtime.list().filter((m) => m.origin === 'standby').reduce((sum, m) => sum + m.sizeBytes, 0)
      if (used >= this.maxBytes) {
        this.log.warn({ usedBytes: used, maxBytes: this.maxBytes }, 'standby copies fill models.standbyMaxBytes: no more are fetched until some are collected')
        return
      }
      try {
        await this.exchange.fetch(id, [home], 'standby')
        this.log.info({ model: id }, 'model kept on standby for work that may move here')
      } catch (err) {
        this.failedAt.set(id, Date.now())
        this.log.warn({ model: id, err: (err as Error).message, retryInMs: RETRY_AFTER_MS }, 'a standby copy of a model could not be fetched')
      }
    }
  }
}
