import { randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { BoundedMap } from '../../common/bounded-map.ts'
import { decisionCodec } from '../../protocols/decisions.ts'
import type { Decision, DecisionMessage, DecisionOutcome, DecisionResult } from '../../protocols/decisions.ts'
import { OPTIMIZE_PROTOCOL, optimizeRequestCodec, optimizeResponseCodec } from '../../protocols/optimize.ts'
import type { OptimizeResponse } from '../../protocols/optimize.ts'
import { TOPICS } from '../../protocols/topics.ts'
import { REJECTED_METRIC } from '../../protocols/validator.ts'
import type { WorkItem } from '../../protocols/work.ts'
import type { Election } from './election.ts'
import { NoCoordinatorError } from '../../common/errors.ts'
import type { Logger } from '../../common/logger.ts'
import type { Membership, Member } from '../membership/membership.ts'
import type { MemberBus } from '../membership/bus.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { MetricsStore } from '../metrics/metrics.ts'
import { place } from './placement.ts'
import type { HomedWork, NodeCapacity } from './placement.ts'
import { MODEL_ID } from '../../protocols/models.ts'
import type { RemoteWorkFacts } from '../../protocols/remote-work-policy.ts'
import type { CoordinationRecords } from './coordination-records.ts'
import type { WorkRegistry } from './work.ts'

/** Decisions by outcome at their target: applied, rejected, stale (from an older term, or not the coordinator). */
export const DECISIONS_METRIC = 'noodle_decisions_received_total'
/**
 * A decision not yet visible in its target's beacon is repeated (same term) after this time, doubled at each
 * repeat up to MAX_REPEAT_AFTER_MS: a target that never says it runs the work (a broken box, or a key holder's
 * made-up member listing work it never runs) is not re-decided every few seconds for ever.
 */
const REPEAT_AFTER_MS = 5_000
const MAX_REPEAT_AFTER_MS = 5 * 60_000
/**
 * Decisions from others than the coordinator of their term are listed (`stale`) and answered at most this many
 * times a minute per sender; past that they are only counted, so a member cannot flood the decision history,
 * the log and the mesh (each answer is gossiped to every box).
 */
const STALE_LISTED_PER_MINUTE = 20
/** Membership changes come in bursts (a partition): one evaluation after the burst. */
const EVALUATE_DEBOUNCE_MS = 100
const FORWARD_TIMEOUT_MS = 5_000
/** A target that refused to run a work item (its view differed from ours) is not asked again for this long. */
const REFUSED_HOLD_MS = 5 * 60_000
/**
 * Decisions remembered: those issued here (results count only from their target), those received (replays), the
 * last applied per work id, recent refusals, work ids seen under two homes.
 */
const REMEMBERED_DECISIONS = 4_096
/** Placement passes run by this coordinator (`/metrics`): a test can wait for a number of them. */
export const EVALUATIONS_METRIC = 'noodle_placement_evaluations_total'

export interface OrchestratorComponents {
  mesh: Pick<Mesh, 'node' | 'peerId' | 'publish' | 'subscribe' | 'unsubscribe'>
  election: Election
  /** Where a claim seen in a decision goes (`claim`: its term may be news to the election). */
  bus: MemberBus
  membership: Membership
  work: WorkRegistry
  records: CoordinationRecords
  metrics: MetricsStore
  log: Logger
  evaluateIntervalMs: number
  /** `coordinator.maxCpuPct`: how hot a box may run before it takes no more work. */
  maxCpuPct: number
  /** `coordinator.orphanAfterMs`: how long the work of a dead member is still placed on others. */
  orphanAfterMs: number
  /** The size of a model registered here, if it is. */
  modelBytes: (id: string) => number | undefined
}

/**
 * The coordinator's side: places the mesh's work (see placement.ts) after every membership change, every
 * `evaluateIntervalMs` and on request, and publishes the changes as term-fenced decisions. Every node's side:
 * applies the decisions addressed to it, if and only if they come from the coordinator of the current term,
 * and answers with the outcome. Both sides record decisions and outcomes in the store.
 */
export class Orchestrator {
  private readonly mesh: OrchestratorComponents['mesh']
  private readonly election: Election
  private readonly bus: MemberBus
  private readonly membership: Membership
  private readonly work: WorkRegistry
  private readonly records: CoordinationRecords
  private readonly metrics: MetricsStore
  private readonly log: Logger
  private readonly evaluateIntervalMs: number
  private readonly maxCpuPct: number
  private readonly orphanAfterMs: number
  private readonly modelBytes: (id: string) => number | undefined
  private readonly selfId: string
  /** `action:target:home:work id` → the term and time it was last decided. */
  private readonly issued = new BoundedMap<string, { term: number, at: number, repeats: number }>(REMEMBERED_DECISIONS)
  /** Per sender of stale decisions: when its minute began (its first stale decision in it), and how many were listed. */
  private readonly staleListed = new BoundedMap<string, { since: number, count: number }>(REMEMBERED_DECISIONS, { refresh: true })
  /** Decisions this coordinator sent, by id: whose result counts. */
  private readonly sent = new BoundedMap<string, { target: string, action: Decision['action'], work: WorkItem }>(REMEMBERED_DECISIONS)
  /**
   * Decisions from the coordinator of their term addressed to this node, as `coordinator:id` (replays), and per
   * work id the (term, coordinator, seq) of the last one applied.
   */
  private readonly received = new BoundedMap<string, true>(REMEMBERED_DECISIONS)
  private readonly lastApplied = new BoundedMap<string, { term: number, coordinator: string, seq: number }>(REMEMBERED_DECISIONS)
  /** `target` + work item (as JSON) → when the target refused to run it. */
  private readonly refused = new BoundedMap<string, number>(REMEMBERED_DECISIONS)
  /** Work ids listed by more than one home (`id` + homes), already counted. */
  private readonly duplicates = new BoundedMap<string, true>(REMEMBERED_DECISIONS)
  private timer: NodeJS.Timeout | undefined
  private soon: NodeJS.Timeout | undefined
  /** Decisions made here in the current term (`seq`), and that term. */
  private seq = 0
  private seqTerm = 0
  private stopped = true

  constructor (components: OrchestratorComponents) {
    this.mesh = components.mesh
    this.election = components.election
    this.bus = components.bus
    this.membership = components.membership
    this.work = components.work
    this.records = components.records
    this.metrics = components.metrics
    this.log = components.log
    this.evaluateIntervalMs = components.evaluateIntervalMs
    this.maxCpuPct = components.maxCpuPct
    this.orphanAfterMs = components.orphanAfterMs
    this.modelBytes = components.modelBytes
    this.selfId = components.mesh.peerId.toString()
  }

  async start (): Promise<void> {
    this.stopped = false
    this.mesh.subscribe(decisionCodec, this.onMessage)
    await this.mesh.node.handle(OPTIMIZE_PROTOCOL, this.onOptimizeStream, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    this.membership.on('change', this.evaluateSoon)
    this.membership.on('change', this.forgetHomeless)
    this.membership.on('reap', this.forgetHomeless)
    this.election.on('change', this.evaluateSoon)
    this.work.on('change', this.evaluateSoon)
    this.timer = setInterval(() => { this.evaluateQuietly() }, this.evaluateIntervalMs)
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.soon)
    this.membership.off('change', this.evaluateSoon)
    this.membership.off('change', this.forgetHomeless)
    this.membership.off('reap', this.forgetHomeless)
    this.election.off('change', this.evaluateSoon)
    this.work.off('change', this.evaluateSoon)
    this.mesh.unsubscribe(decisionCodec, this.onMessage)
    await this.mesh.node.unhandle(OPTIMIZE_PROTOCOL)
  }

  /**
   * A fresh evaluation by the coordinator, from any node: here when we coordinate, else over a stream to it.
   * Throws NoCoordinatorError while there is none, or when it cannot be reached.
   */
  async optimize (): Promise<OptimizeResponse> {
    const { election } = this
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
    const { election, membership, mesh, records } = this
    const term = election.term
    if (!election.isCoordinator) throw new NoCoordinatorError('this node is not the coordinator')
    const members = membership.list()
    const nodes = members.filter((m) => m.state === 'alive' && m.health != null).map(capacityOf)
    const now = Date.now()
    this.metrics.inc(EVALUATIONS_METRIC)
    const { placeable, orphaned, duplicated } = homedWork(members, now, this.orphanAfterMs)
    const work = placeable.map((w) => this.withFacts(w, nodes, now))
    const decisions: Decision[] = []
    // A work id two homes list is nobody's to move: each home runs its own, and it is stopped anywhere else.
    for (const [id, homes] of duplicated) {
      this.countDuplicate(id, homes)
      for (const n of nodes) {
        // A home runs its own; anywhere else, whichever home's it is, it stops.
        if (!n.running.includes(id) || homes.some((h) => h.home === n.peerId)) continue
        for (const homed of homes) decisions.push(this.decision(term, n.peerId, 'stop', homed, `work ${id} is listed by ${homes.length} homes`, now))
      }
    }
    // Work whose home left, or is dead for longer than orphanAfterMs, is no longer placed: stop it where it runs.
    for (const homed of orphaned) {
      const why = membership.get(homed.home)?.state === 'left' ? 'its home left the mesh' : 'its home has been dead for over coordinator.orphanAfterMs'
      for (const n of nodes) {
        if (n.running.includes(homed.item.id)) decisions.push(this.decision(term, n.peerId, 'stop', homed, why, now))
      }
    }
    for (const { workId, node, reason } of place(nodes, work, this.maxCpuPct)) {
      const homed = work.find((w) => w.item.id === workId) as HomedWork
      const runners = nodes.filter((n) => n.running.includes(workId)).map((n) => n.peerId)
      if (node != null && !runners.includes(node)) decisions.push(this.decision(term, node, 'run', homed, reason, now))
      for (const runner of runners) {
        if (runner !== node) decisions.push(this.decision(term, runner, 'stop', homed, `moved: ${reason}`, now))
      }
    }
    const keyOf = (d: Decision): string => `${d.action}:${d.target}:${d.home}:${d.work.id}`
    // A decision this pass does not make again was carried out (its target shows it): its backoff is over.
    const decidedNow = new Set(decisions.map(keyOf))
    for (const key of [...this.issued.keys()]) if (!decidedNow.has(key)) this.issued.delete(key)
    const fresh = decisions.filter((d) => {
      const key = keyOf(d)
      const last = this.issued.get(key)
      const wait = last == null ? 0 : Math.min(REPEAT_AFTER_MS * 2 ** last.repeats, MAX_REPEAT_AFTER_MS)
      if (last != null && last.term === term && now - last.at < wait) return false
      // Decided again (the target still does not show it): wait longer next time; in a new term, start again.
      const repeats = last != null && last.term === term ? last.repeats + 1 : 0
      this.issued.set(key, { term, at: now, repeats })
      return true
    })
    for (const d of fresh) {
      if (this.seqTerm !== term) {
        this.seqTerm = term
        this.seq = 0
      }
      d.seq = ++this.seq
      this.sent.set(d.id, { target: d.target, action: d.action, work: d.work })
      records.recordDecision({ id: d.id, term, coordinator: this.selfId, target: d.target, action: d.action, workId: d.work.id, reason: d.reason, at: d.at })
      this.log.info({ id: d.id, term, target: d.target, action: d.action, work: d.work.id, reason: d.reason }, `decided: ${d.action} ${d.work.id}`)
      if (d.target === this.selfId) this.applyOwn(d)
      else await mesh.publish(decisionCodec, d).catch((err: unknown) => { this.log.warn({ err, id: d.id }, 'decision not published') })
    }
    return {
      v: 1,
      term,
      coordinator: this.selfId,
      decisions: fresh.map((d) => ({ id: d.id, target: d.target, action: d.action, workId: d.work.id, reason: d.reason }))
    }
  }

  /** What placement needs to know of a work item beyond the item: credentials, model size, recent refusals. */
  private withFacts (homed: HomedWork, nodes: NodeCapacity[], now: number): HomedWork {
    const { item, home } = homed
    const model = item.model !== undefined && MODEL_ID.test(item.model) ? this.modelBytes(item.model) : undefined
    const refusedBy = nodes.map((n) => n.peerId).filter((peer) => {
      const key = refusalKey(peer, item)
      const at = this.refused.get(key)
      if (at !== undefined && now - at >= REFUSED_HOLD_MS) this.refused.delete(key)
      return at !== undefined && now - at < REFUSED_HOLD_MS
    })
    const needsCredentials = this.membership.get(home)?.health?.accepts.credentials.includes(item.id) ?? false
    return { ...homed, needsCredentials, refusedBy, ...(model === undefined ? {} : { modelBytes: model }) }
  }

  /** A decision, its id unguessable (its `seq` is set once it is sure to be sent). */
  private decision (term: number, target: string, action: Decision['action'], homed: HomedWork, reason: string, at: number): Decision {
    return { v: 1, type: 'decision', id: `${term}-${randomBytes(12).toString('hex')}`, term, target, action, work: homed.item, home: homed.home, reason, at, seq: 0 }
  }

  /** Counted once per work id and set of homes (on the health topic: the beacons said it), and logged. */
  private countDuplicate (id: string, homes: HomedWork[]): void {
    const key = `${id} ${homes.map((h) => h.home).sort().join(' ')}`
    if (this.duplicates.has(key)) return
    this.duplicates.set(key, true)
    this.metrics.inc(REJECTED_METRIC, { topic: TOPICS.nodeHealth, reason: 'duplicate-work' })
    this.log.warn({ reason: 'duplicate-work', work: id, homes: homes.map((h) => h.home) }, `work ${id} is listed by more than one home: not moved until only one lists it`)
  }

  /** Every node stops what it runs for homes that are no longer members (reaped, or left). */
  private readonly forgetHomeless = (): void => {
    const { membership } = this
    const dropped = this.work.forgetHomeless((home) => {
      const member = membership.get(home)
      return member != null && member.state !== 'left'
    })
    if (dropped.length > 0) this.log.info({ work: dropped }, 'stopped work whose home is no longer a member')
  }

  private readonly evaluateSoon = (): void => {
    if (this.stopped || this.soon != null || !this.election.isCoordinator) return
    this.soon = setTimeout(() => {
      this.soon = undefined
      this.evaluateQuietly()
    }, EVALUATE_DEBOUNCE_MS)
  }

  private evaluateQuietly (): void {
    if (this.stopped || !this.election.isCoordinator) return
    this.evaluate().catch((err: unknown) => { this.log.warn({ err }, 'placement failed') })
  }

  private readonly onMessage = (message: DecisionMessage, from: PeerId): void => {
    if (message.type === 'result') {
      this.onResult(message, from.toString())
      return
    }
    if (message.target !== this.selfId) return
    const sender = from.toString()
    // A decision is its sender's signed claim to its term: a term we have not heard of yet is news.
    if (message.term > this.election.term) this.bus.emit('claim', sender, message.term, decisionCodec.topic)
    const { election } = this
    const fromCoordinator = election.coordinator === sender && election.term === message.term
    // Only the coordinator's decisions are remembered (as its own: `sender:id`), so nobody else can fill the
    // memory or take an id first. The same signed decision again (gossip replays once its seen-cache forgets),
    // or one the coordinator made before the last one applied for the same work: not applied, not answered.
    const key = `${sender}:${message.id}`
    const last = this.lastApplied.get(message.work.id)
    if (fromCoordinator && (this.received.has(key) ||
      (last !== undefined && last.term === message.term && last.coordinator === sender && message.seq > 0 && message.seq < last.seq))) {
      this.refuse('replayed', { id: message.id, from: sender, work: message.work.id }, 'a replayed decision was ignored')
      return
    }
    if (fromCoordinator) this.received.set(key, true)
    else if (!this.mayListStale(sender)) {
      this.metrics.inc(DECISIONS_METRIC, { outcome: 'stale' })
      this.metrics.inc(REJECTED_METRIC, { topic: decisionCodec.topic, reason: 'stale-term' })
      return
    }
    this.records.recordDecision({
      id: message.id, term: message.term, coordinator: sender, target: message.target, action: message.action,
      workId: message.work.id, reason: message.reason, at: message.at
    })
    const result = fromCoordinator
      ? this.vetAndApply(message, sender)
      : { outcome: 'stale' as const, detail: `not from the coordinator of term ${election.term}` }
    this.finish(message, result.outcome, result.detail, true)
  }

  /** Whether a stale decision from `sender` is listed and answered, or (past its share this minute) only counted. */
  private mayListStale (sender: string): boolean {
    const now = Date.now()
    const listed = this.staleListed.get(sender)
    const window = listed !== undefined && now - listed.since < 60_000 ? listed : { since: now, count: 0 }
    this.staleListed.set(sender, { since: window.since, count: window.count + 1 })
    return window.count < STALE_LISTED_PER_MINUTE
  }

  private applyOwn (decision: Decision): void {
    const { outcome, detail } = this.vetAndApply(decision, this.selfId)
    if (outcome === 'rejected' && decision.action === 'run') this.refused.set(refusalKey(this.selfId, decision.work), Date.now())
    this.finish(decision, outcome, detail, false)
  }

  /**
   * A decision from the coordinator of the current term, checked before it runs anything here: its `home` must
   * be a member whose own beacon lists exactly this work (a coordinator cannot make up work, or claim a home to
   * get around the checks for work from elsewhere), and work homed elsewhere must fit this box's own policy.
   */
  private vetAndApply (decision: Decision, coordinator: string): { outcome: DecisionOutcome, detail: string } {
    if (decision.action === 'run') {
      const forged = this.homeProblem(decision)
      if (forged !== null) {
        this.refuse('forged-home', { id: decision.id, work: decision.work.id, home: decision.home }, 'a decision named a home that does not have the work')
        return { outcome: 'rejected', detail: forged }
      }
    }
    const result = this.work.apply(decision, this.factsOf(decision))
    if (result.outcome === 'rejected') this.refuse(result.reason ?? 'refused-work', { id: decision.id, work: decision.work.id, detail: result.detail }, 'a decision asked for work this box does not run for others')
    if (result.outcome === 'applied') this.lastApplied.set(decision.work.id, { term: decision.term, coordinator, seq: decision.seq })
    return { outcome: result.outcome, detail: result.detail }
  }

  private homeProblem ({ home, work }: Decision): string | null {
    if (home === this.selfId) {
      const mine = [...this.work.configured, ...this.work.advertised()]
      return mine.some((item) => isDeepStrictEqual(item, work)) ? null : `work ${work.id} is not configured here, though the decision says this is its home`
    }
    const member = this.membership.get(home)
    if (member == null || member.state === 'left' || member.health == null) return `its home ${home} is not a member here`
    const item = member.health.work.find((w) => w.id === work.id)
    if (item === undefined) return `its home's beacon does not list work ${work.id}`
    return isDeepStrictEqual(item, work) ? null : `work ${work.id} differs from what its home's beacon says`
  }

  private factsOf ({ home, work }: Decision): RemoteWorkFacts {
    const needsCredentials = this.membership.get(home)?.health?.accepts.credentials.includes(work.id) ?? false
    const modelBytes = work.model !== undefined && MODEL_ID.test(work.model) ? this.modelBytes(work.model) : undefined
    return { needsCredentials, modelBytes }
  }

  /** A result counts only from its decision's target, and only here, where the decision was made. */
  private onResult (result: DecisionResult, from: string): void {
    const sent = this.sent.get(result.id)
    if (sent === undefined) return
    if (sent.target !== from) {
      this.refuse('not-target', { id: result.id, from, target: sent.target }, 'a decision result came from a member that was not its target')
      return
    }
    this.records.recordOutcome(result.id, result.outcome, result.detail, result.at)
    if (result.outcome === 'rejected' && sent.action === 'run') this.refused.set(refusalKey(from, sent.work), Date.now())
  }

  private refuse (reason: string, fields: Record<string, unknown>, message: string): void {
    this.metrics.inc(REJECTED_METRIC, { topic: decisionCodec.topic, reason })
    this.log.warn({ reason, ...fields }, message)
  }

  private finish (decision: Decision, outcome: DecisionOutcome, detail: string, report: boolean): void {
    const at = Date.now()
    this.records.recordOutcome(decision.id, outcome, detail, at)
    this.metrics.inc(DECISIONS_METRIC, { outcome })
    if (outcome === 'stale') this.metrics.inc(REJECTED_METRIC, { topic: decisionCodec.topic, reason: 'stale-term' })
    this.log.info({ id: decision.id, term: decision.term, action: decision.action, work: decision.work.id, outcome, detail }, `decision ${outcome}`)
    // The coordinator's decisions for itself are settled here; a node told by gossip reports back.
    if (!report) return
    const result: DecisionResult = { v: 1, type: 'result', id: decision.id, term: decision.term, outcome, detail, at }
    this.mesh.publish(decisionCodec, result).catch((err: unknown) => { this.log.debug({ err }, 'decision result not published') })
  }

  private async forward (coordinator: PeerId): Promise<OptimizeResponse> {
    const signal = AbortSignal.timeout(FORWARD_TIMEOUT_MS)
    const stream = await this.mesh.node.dialProtocol(coordinator, OPTIMIZE_PROTOCOL, { signal })
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
      this.log.debug({ err: (err as Error).message, peer: connection.remotePeer.toString() }, 'optimize request failed')
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
    modelMs: new Map(h.models.map((m) => [m.id, m.p50Ms])),
    accepts: h.accepts,
    unable: new Map(h.unable.map((u) => [u.work, u.why]))
  }
}

/**
 * Every piece of work configured anywhere, with its home. Members that left took theirs with them, and the work
 * of a member dead for `orphanAfterMs` is orphaned too: nobody is sure any more that it is still wanted. A work id
 * listed by two members that have not left is `duplicated`: neither home's claim to it can be told from a copy
 * (a rogue naming a real camera's id), so neither is placed. Work of a gone member under an id a member still
 * holds is left alone.
 */
function homedWork (members: Member[], now: number, orphanAfterMs: number): { placeable: HomedWork[], orphaned: HomedWork[], duplicated: Map<string, HomedWork[]> } {
  const gone = (m: Member) => m.state === 'left' || (m.state === 'dead' && now - m.lastSeen >= orphanAfterMs)
  const byId = new Map<string, HomedWork[]>()
  for (const m of members) {
    if (m.state === 'left') continue
    for (const item of m.health?.work ?? []) byId.set(item.id, [...byId.get(item.id) ?? [], { item, home: m.peerId }])
  }
  const duplicated = new Map([...byId].filter(([, homes]) => homes.length > 1))
  const held = new Set(members.filter((m) => !gone(m)).flatMap((m) => (m.health?.work ?? []).map((item) => item.id)))
  const collect = (from: Member[]): HomedWork[] => from.flatMap((m) => (m.health?.work ?? [])
    .filter((item) => !duplicated.has(item.id))
    .map((item) => ({ item, home: m.peerId })))
  const orphaned = collect(members.filter(gone)).filter((w) => !held.has(w.item.id))
  return { placeable: collect(members.filter((m) => !gone(m))), orphaned, duplicated }
}

function refusalKey (target: string, item: WorkItem): string {
  return `${target} ${JSON.stringify(item)}`
}

