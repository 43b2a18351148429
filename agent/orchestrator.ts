import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { decisionCodec } from '../protocols/decisions.ts'
import type { Decision, DecisionMessage, DecisionOutcome, DecisionResult } from '../protocols/decisions.ts'
import { OPTIMIZE_PROTOCOL, optimizeRequestCodec, optimizeResponseCodec } from '../protocols/optimize.ts'
import type { OptimizeResponse } from '../protocols/optimize.ts'
import { REJECTED_METRIC } from '../protocols/validator.ts'
import type { Election } from './election.ts'
import { NoCoordinatorError } from './errors.ts'
import type { Logger } from './logger.ts'
import type { Membership, Member } from './membership.ts'
import type { Mesh } from './mesh.ts'
import type { MetricsStore } from './metrics.ts'
import { place } from './placement.ts'
import type { HomedWork, NodeCapacity } from './placement.ts'
import type { Store } from './store.ts'
import type { WorkRegistry } from './work.ts'

/** Decisions by outcome at their target: applied, rejected, stale (from an older term, or not the coordinator). */
export const DECISIONS_METRIC = 'noodle_decisions_received_total'
/** A decision not yet visible in its target's beacon is not repeated within this time (same term). */
const REPEAT_AFTER_MS = 5_000
/** Membership changes come in bursts (a partition): one evaluation after the burst. */
const EVALUATE_DEBOUNCE_MS = 100
const FORWARD_TIMEOUT_MS = 5_000

export interface OrchestratorComponents {
  mesh: Mesh
  election: Election
  /** Takes a claim seen in a decision (its term may be news to us). */
  observeClaim: (peerId: string, term: number) => void
  membership: Membership
  work: WorkRegistry
  store: Store
  metrics: MetricsStore
  log: Logger
  evaluateIntervalMs: number
  /** `coordinator.maxCpuPct`: how hot a box may run before it takes no more work. */
  maxCpuPct: number
}

/**
 * The coordinator's side: places the mesh's work (see placement.ts) after every membership change, every
 * `evaluateIntervalMs` and on request, and publishes the changes as term-fenced decisions. Every node's side:
 * applies the decisions addressed to it, if and only if they come from the coordinator of the current term,
 * and answers with the outcome. Both sides record decisions and outcomes in the store.
 */
export class Orchestrator {
  private readonly c: OrchestratorComponents
  private readonly selfId: string
  private readonly issued = new Map<string, { term: number, at: number }>()
  private timer: NodeJS.Timeout | undefined
  private soon: NodeJS.Timeout | undefined
  private counter = 0
  private stopped = true

  constructor (components: OrchestratorComponents) {
    this.c = components
    this.selfId = components.mesh.peerId.toString()
    components.mesh.subscribe(decisionCodec, (message, from) => { this.onMessage(message, from) })
  }

  async start (): Promise<void> {
    this.stopped = false
    await this.c.mesh.node.handle(OPTIMIZE_PROTOCOL, this.onOptimizeStream, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    this.c.membership.on('change', this.evaluateSoon)
    this.c.election.on('change', this.evaluateSoon)
    this.c.work.on('change', this.evaluateSoon)
    this.timer = setInterval(() => { this.evaluateQuietly() }, this.c.evaluateIntervalMs)
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.soon)
    this.c.membership.off('change', this.evaluateSoon)
    this.c.election.off('change', this.evaluateSoon)
    this.c.work.off('change', this.evaluateSoon)
    await this.c.mesh.node.unhandle(OPTIMIZE_PROTOCOL)
  }

  /**
   * A fresh evaluation by the coordinator, from any node: here when we coordinate, else over a stream to it.
   * Throws NoCoordinatorError while there is none, or when it cannot be reached.
   */
  async optimize (): Promise<OptimizeResponse> {
    const { election } = this.c
    if (election.isCoordinator) return await this.evaluate()
    const coordinator = election.coordinator
    if (coordinator == null) throw new NoCoordinatorError(`no coordinator in term ${election.term} yet: try again in a moment`)
    try {
      return await this.forward(peerIdFromString(coordinator))
    } catch (err) {
      throw new NoCoordinatorError(`the coordinator (${coordinator}) did not answer: ${(err as Error).message}`, { cause: err })
    }
  }

  /** The coordinator's placement pass: publishes what changed and returns it. */
  async evaluate (): Promise<OptimizeResponse> {
    const { election, membership, mesh, store } = this.c
    const term = election.term
    if (!election.isCoordinator) throw new NoCoordinatorError('this node is not the coordinator')
    const members = membership.list()
    const nodes = members.filter((m) => m.state === 'alive' && m.health != null).map(capacityOf)
    const work = homedWork(members)
    const now = Date.now()
    const decisions: Decision[] = []
    for (const { workId, node, reason } of place(nodes, work, this.c.maxCpuPct)) {
      const homed = work.find((w) => w.item.id === workId) as HomedWork
      const runners = nodes.filter((n) => n.running.includes(workId)).map((n) => n.peerId)
      if (node != null && !runners.includes(node)) decisions.push(this.decision(term, node, 'run', homed, reason, now))
      for (const runner of runners) {
        if (runner !== node) decisions.push(this.decision(term, runner, 'stop', homed, `moved: ${reason}`, now))
      }
    }
    const fresh = decisions.filter((d) => {
      const key = `${d.action}:${d.target}:${d.work.id}`
      const last = this.issued.get(key)
      if (last != null && last.term === term && now - last.at < REPEAT_AFTER_MS) return false
      this.issued.set(key, { term, at: now })
      return true
    })
    for (const d of fresh) {
      store.recordDecision({ id: d.id, term, coordinator: this.selfId, target: d.target, action: d.action, workId: d.work.id, reason: d.reason, at: d.at })
      this.c.log.info({ id: d.id, term, target: d.target, action: d.action, work: d.work.id, reason: d.reason }, `decided: ${d.action} ${d.work.id}`)
      if (d.target === this.selfId) this.applyOwn(d)
      else await mesh.publish(decisionCodec, d).catch((err: unknown) => { this.c.log.warn({ err, id: d.id }, 'decision not published') })
    }
    return {
      v: 1,
      term,
      coordinator: this.selfId,
      decisions: fresh.map((d) => ({ id: d.id, target: d.target, action: d.action, workId: d.work.id, reason: d.reason }))
    }
  }

  private decision (term: number, target: string, action: Decision['action'], homed: HomedWork, reason: string, at: number): Decision {
    return { v: 1, type: 'decision', id: `${term}-${at.toString(36)}-${++this.counter}`, term, target, action, work: homed.item, home: homed.home, reason, at }
  }

  private readonly evaluateSoon = (): void => {
    if (this.stopped || this.soon != null || !this.c.election.isCoordinator) return
    this.soon = setTimeout(() => {
      this.soon = undefined
      this.evaluateQuietly()
    }, EVALUATE_DEBOUNCE_MS)
  }

  private evaluateQuietly (): void {
    if (this.stopped || !this.c.election.isCoordinator) return
    this.evaluate().catch((err: unknown) => { this.c.log.warn({ err }, 'placement failed') })
  }

  private onMessage (message: DecisionMessage, from: PeerId): void {
    if (message.type === 'result') {
      this.c.store.recordOutcome(message.id, message.outcome, message.detail, message.at)
      return
    }
    if (message.target !== this.selfId) return
    const sender = from.toString()
    // A decision is its sender's signed claim to its term: a term we have not heard of yet is news.
    if (message.term > this.c.election.term) this.c.observeClaim(sender, message.term)
    this.c.store.recordDecision({
      id: message.id, term: message.term, coordinator: sender, target: message.target, action: message.action,
      workId: message.work.id, reason: message.reason, at: message.at
    })
    const { election } = this.c
    const result = election.coordinator === sender && election.term === message.term
      ? this.c.work.apply(message)
      : { outcome: 'stale' as const, detail: `not from the coordinator of term ${election.term}` }
    this.finish(message, result.outcome, result.detail, true)
  }

  private applyOwn (decision: Decision): void {
    const { outcome, detail } = this.c.work.apply(decision)
    this.finish(decision, outcome, detail, false)
  }

  private finish (decision: Decision, outcome: DecisionOutcome, detail: string, report: boolean): void {
    const at = Date.now()
    this.c.store.recordOutcome(decision.id, outcome, detail, at)
    this.c.metrics.inc(DECISIONS_METRIC, { outcome })
    if (outcome === 'stale') this.c.metrics.inc(REJECTED_METRIC, { topic: decisionCodec.topic, reason: 'stale-term' })
    this.c.log.info({ id: decision.id, term: decision.term, action: decision.action, work: decision.work.id, outcome, detail }, `decision ${outcome}`)
    // The coordinator's decisions for itself are settled here; a node told by gossip reports back.
    if (!report) return
    const result: DecisionResult = { v: 1, type: 'result', id: decision.id, term: decision.term, outcome, detail, at }
    this.c.mesh.publish(decisionCodec, result).catch((err: unknown) => { this.c.log.debug({ err }, 'decision result not published') })
  }

  private async forward (coordinator: PeerId): Promise<OptimizeResponse> {
    const signal = AbortSignal.timeout(FORWARD_TIMEOUT_MS)
    const stream = await this.c.mesh.node.dialProtocol(coordinator, OPTIMIZE_PROTOCOL, { signal })
    const lp = lpStream(stream, { maxDataLength: optimizeResponseCodec.maxBytes })
    await lp.write(optimizeRequestCodec.encode({ v: 1 }), { signal })
    const decoded = optimizeResponseCodec.decode((await lp.read({ signal })).subarray())
    await stream.close({ signal })
    if (!decoded.ok) throw new Error(`its answer was ${decoded.reason}: ${decoded.detail}`)
    return decoded.value
  }

  private readonly onOptimizeStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const signal = AbortSignal.timeout(FORWARD_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: optimizeRequestCodec.maxBytes })
      const request = optimizeRequestCodec.decode((await lp.read({ signal })).subarray())
      if (!request.ok) throw new Error(`request ${request.reason}: ${request.detail}`)
      await lp.write(optimizeResponseCodec.encode(await this.evaluate()), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.c.log.debug({ err: (err as Error).message, peer: connection.remotePeer.toString() }, 'optimize request failed')
      stream.abort(err as Error)
    }
  }
}

/** An alive member's capacity: its health is from a beacon (decoded with defaults), never an older stored record. */
function capacityOf (member: Member): NodeCapacity {
  const h = member.health as NonNullable<Member['health']>
  return {
    peerId: member.peerId,
    accelerators: h.accelerators.length,
    cpus: h.cpus,
    cpuPct: h.cpuPct,
    memFreeBytes: Math.max(0, h.memTotalBytes - h.memUsedBytes),
    running: h.running,
    modelMs: new Map(h.models.map((m) => [m.id, m.p50Ms]))
  }
}

/** Every piece of work configured anywhere, with its home: members that left took theirs with them. */
function homedWork (members: Member[]): HomedWork[] {
  const seen = new Set<string>()
  const out: HomedWork[] = []
  for (const m of members) {
    if (m.state === 'left') continue
    for (const item of m.health?.work ?? []) {
      if (seen.has(item.id)) continue
      seen.add(item.id)
      out.push({ item, home: m.peerId })
    }
  }
  return out
}
