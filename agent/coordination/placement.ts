import { DEFAULT_ACCEPTS } from '../../protocols/work.ts'
import type { RemoteWorkAccepts, WorkItem } from '../../protocols/work.ts'
import type { UnableReason } from '../../protocols/health.ts'
import { remoteWorkRefusal } from '../../protocols/remote-work-policy.ts'

/** A live node as the placement sees it (from its last beacon). */
export interface NodeCapacity {
  peerId: string
  accelerators: number
  cpus: number
  /** Whole-box CPU use now, 0–100 (it includes the work the node already runs). */
  cpuPct: number
  memFreeBytes: number
  running: readonly string[]
  /** Model id → its measured latency on this node (p50 ms): how fast this box runs the work's model. */
  modelMs: ReadonlyMap<string, number>
  /** What the node runs for other homes (its beacon's `accepts`); absent: the default policy. */
  accepts?: RemoteWorkAccepts
  /**
   * Work the node says it cannot run as it should (its beacon's `unable`: its model cannot run there, or not at
   * its pace): placed there only when no other node may take it.
   */
  unable?: ReadonlyMap<string, UnableReason>
}

/** A piece of work and its home: the node it is configured on, where its data is. */
export interface HomedWork {
  item: WorkItem
  home: string
  /** Its home has credentials for it: only nodes that have them too may run it. */
  needsCredentials?: boolean
  /** The size of its model, where the coordinator knows it. */
  modelBytes?: number
  /** Nodes that refused it lately (their view differed): not asked again for a while. */
  refusedBy?: readonly string[]
}

export interface Placement {
  workId: string
  /** Where it should run; null when no live node can take it. */
  node: string | null
  reason: string
}

/** A node takes new work while its projected CPU stays under this (`coordinator.maxCpuPct`)… */
export const DEFAULT_TAKE_LIMIT_PCT = 80
/** …and keeps work it already runs until it passes this much more (hysteresis: no ping-pong). */
export const KEEP_MARGIN_PCT = 10
/** An accelerator does most of the work: the share of the CPU estimate that stays on the CPU. */
const ACCELERATED_CPU_SHARE = 0.25
const MiB = 1024 * 1024

/**
 * Scores: an accelerator for work that wants one beats locality, which beats speed, which beats staying put,
 * which beats headroom. Speed: the node that measured the work's model fastest scores `speed`, the others in
 * proportion (half as fast, half of it); a node that has not measured the model (not compiled there yet) gets the
 * benefit of the doubt. Speed ranks the nodes that may take work that leaves its home (home dead or too busy),
 * but never pulls work off a home with headroom: latencies measured on busy boxes are noisy, and the hardware
 * that makes a box truly faster is what `accelerator` is for.
 */
const SCORE = { accelerator: 100, home: 50, speed: 40, incumbent: 30, headroomPerPct: 0.25 }

function accelerated (item: WorkItem, node: NodeCapacity): boolean {
  return item.accelerator !== 'none' && node.accelerators > 0
}

/** The work's share of the node's CPU (0–100 of the whole box). */
function costPct (item: WorkItem, node: NodeCapacity): number {
  return (item.cpuPct * (accelerated(item, node) ? ACCELERATED_CPU_SHARE : 1)) / node.cpus
}

/**
 * Decides where every piece of work runs, greedily, hardest first (work that needs an accelerator, then the
 * heaviest). For each, among the live nodes allowed to run it (its home; others only where their own
 * `remoteWork` policy accepts it, never for pinned work; accelerators only if required)
 * that have headroom, the best scores: an accelerator when the work wants one, then its home (the frames are
 * there), then where it already runs (moves are not free), then the most headroom; ties go to the lower peer id,
 * so every coordinator computes the same placement from the same view. Work whose node died or went over the
 * keep limit is moved. Work nobody has headroom for stays where it runs, or at home; failing both (its node and
 * its home are dead), it goes to the least-loaded node that may run it: run slowly rather than not at all.
 */
export function place (nodes: readonly NodeCapacity[], work: readonly HomedWork[], takeLimitPct = DEFAULT_TAKE_LIMIT_PCT): Placement[] {
  const keepLimitPct = takeLimitPct + KEEP_MARGIN_PCT
  const load = new Map(nodes.map((n) => [n.peerId, n.cpuPct]))
  const memFree = new Map(nodes.map((n) => [n.peerId, n.memFreeBytes]))
  const order = [...work].sort((a, b) =>
    needRank(a.item) - needRank(b.item) || b.item.cpuPct - a.item.cpuPct || (a.item.id < b.item.id ? -1 : 1))
  const placements: Placement[] = []
  for (const homed of order) {
    const { item, home } = homed
    const incumbents = nodes.filter((n) => n.running.includes(item.id))
    const allowed = nodes.filter((n) => (n.peerId === home || accepts(n, homed)) && (item.accelerator !== 'required' || n.accelerators > 0))
    const fastestMs = fastest(item, allowed)
    let best: { node: NodeCapacity, score: number, projected: number } | null = null
    for (const node of allowed) {
      if (node.unable?.has(item.id) === true) continue
      const incumbent = incumbents.includes(node)
      const projected = (load.get(node.peerId) ?? 0) + (incumbent ? 0 : costPct(item, node))
      const fits = incumbent
        ? projected <= keepLimitPct
        : projected <= takeLimitPct && (memFree.get(node.peerId) ?? 0) >= item.memMB * MiB
      if (!fits) continue
      const score = (accelerated(item, node) ? SCORE.accelerator : 0) + speedScore(item, node, fastestMs) +
        (node.peerId === home ? SCORE.home : 0) + (incumbent ? SCORE.incumbent : 0) + (100 - projected) * SCORE.headroomPerPct
      if (best == null || score > best.score || (score === best.score && node.peerId < best.node.peerId)) {
        best = { node, score, projected }
      }
    }
    if (best == null) {
      placements.push(fallback(item, home, allowed, incumbents, load, memFree))
      continue
    }
    const chosen = best.node
    const stays = incumbents.includes(chosen)
    if (!stays) {
      load.set(chosen.peerId, best.projected)
      memFree.set(chosen.peerId, (memFree.get(chosen.peerId) ?? 0) - item.memMB * MiB)
      for (const old of incumbents) load.set(old.peerId, (load.get(old.peerId) ?? 0) - costPct(item, old))
    }
    placements.push({ workId: item.id, node: chosen.peerId, reason: reasonFor(item, chosen, home, stays, incumbents, fastestMs) })
  }
  return placements
}

/** Whether a node other than the work's home would run it: its own policy (sources, model, credentials) allows it. */
function accepts (node: NodeCapacity, { item, needsCredentials = false, modelBytes, refusedBy = [] }: HomedWork): boolean {
  return !refusedBy.includes(node.peerId) && remoteWorkRefusal(node.accepts ?? DEFAULT_ACCEPTS, item, { needsCredentials, modelBytes }) === null
}

function fallback (item: WorkItem, home: string, allowed: NodeCapacity[], incumbents: NodeCapacity[],
  load: Map<string, number>, memFree: Map<string, number>): Placement {
  if (allowed.length === 0) return { workId: item.id, node: null, reason: 'no live node may run it' }
  // A node that says it cannot run the work is the last resort: the work goes to one that can even without
  // headroom, and stays only where nobody else may take it (failing visibly there, and tried again) rather than
  // stopped. Work too slow where it is stays there: slow rather than on a box with no room for it either.
  const able = allowed.filter((n) => n.unable?.get(item.id) !== 'cannot-run')
  const stay = incumbents.find((n) => allowed.includes(n))?.peerId ?? (allowed.some((n) => n.peerId === home) ? home : null)
  const stayIsAble = able.some((n) => n.peerId === stay)
  if (stay != null && (stayIsAble || able.length === 0)) {
    const unable = allowed.find((n) => n.peerId === stay)?.unable?.get(item.id)
    const reason = unable === 'cannot-run'
      ? 'its model cannot run there, and no other live node may run it: left where it is'
      : unable === 'too-slow'
        ? 'it runs too slowly there, and no other live node fits: left where it is'
        : 'no live node has headroom: left where it is'
    return { workId: item.id, node: stay, reason }
  }
  const least = (able.length > 0 ? able : allowed)
    .filter((n) => (memFree.get(n.peerId) ?? 0) >= item.memMB * MiB)
    .sort((a, b) => (load.get(a.peerId) ?? 0) - (load.get(b.peerId) ?? 0) || (a.peerId < b.peerId ? -1 : 1))[0]
  if (least == null) return { workId: item.id, node: null, reason: 'no live node has the memory for it' }
  load.set(least.peerId, (load.get(least.peerId) ?? 0) + costPct(item, least))
  memFree.set(least.peerId, (memFree.get(least.peerId) ?? 0) - item.memMB * MiB)
  return { workId: item.id, node: least.peerId, reason: stay != null ? 'its node cannot run it and no node has headroom: least loaded' : 'its node and home are gone and no node has headroom: least loaded' }
}

/** The lowest latency any allowed node measured for the work's model, or undefined where none did. */
function fastest (item: WorkItem, nodes: readonly NodeCapacity[]): number | undefined {
  const measured = nodes.map((n) => item.model === undefined ? undefined : n.modelMs.get(item.model)).filter((ms) => ms !== undefined)
  return measured.length === 0 ? undefined : Math.min(...measured)
}

function speedScore (item: WorkItem, node: NodeCapacity, fastestMs: number | undefined): number {
  const ms = item.model === undefined ? undefined : node.modelMs.get(item.model)
  if (ms === undefined || fastestMs === undefined || ms === 0) return SCORE.speed
  return SCORE.speed * fastestMs / ms
}

function needRank (item: WorkItem): number {
  return item.accelerator === 'required' ? 0 : item.accelerator === 'preferred' ? 1 : 2
}

function reasonFor (item: WorkItem, chosen: NodeCapacity, home: string, stays: boolean, incumbents: NodeCapacity[], fastestMs: number | undefined): string {
  if (stays) return 'already runs there, with headroom'
  const ms = item.model === undefined ? undefined : chosen.modelMs.get(item.model)
  const why = accelerated(item, chosen)
    ? 'accelerator with headroom'
    : chosen.peerId === home
      ? 'at home, where its data is'
      : ms !== undefined && ms === fastestMs ? `runs its model fastest (p50 ${ms} ms), with headroom` : 'most headroom'
  const unable = incumbents.map((n) => n.unable?.get(item.id)).find((u) => u !== undefined)
  if (unable !== undefined) return `${why}; its node ${unable === 'cannot-run' ? 'cannot run its model' : 'runs its model too slowly'}`
  if (incumbents.length > 0) return `${why}; its node is too busy or a better fit appeared`
  return why
}
