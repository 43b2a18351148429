import type { Member, MemberHealth } from '../membership/membership.ts'
import { LINK_LENGTH } from '../../protocols/health.ts'
import type { ModelRecord, ProviderBenchmark } from '../../runtime/registry.ts'
import type { TensorSpec } from '../../runtime/tensors.ts'
import type { SensorView } from '../ingest/sensor-store.ts'
import type { DecisionRecord } from '../coordination/coordination-records.ts'

/**
 * The bodies of the control API. The CLI's `--json` prints them unchanged, so scripts can use either; their
 * shape is a contract: add fields with care, never rename.
 */
export interface StatusView {
  peerId: string
  name: string
  version: string
  uptimeS: number
  role: string
  /** The coordinator's peer id and name, or null while there is none. */
  coordinator: string | null
  coordinatorName: string | null
  /** The election term this node knows: the coordinator's, or the last one while there is none. */
  term: number
  /** Members alive now, self included. */
  members: number
  /** How late this agent's own timers run lately (ms); failure detection widens its timeouts with it. */
  loopLagMs: number
  /** 0: a full mesh; K: a partial mesh of K member connections (mesh.connections). */
  meshConnections: number
  /**
   * The data dir's disk: free bytes, and `full` while little space is left or a write failed for want of space
   * in the last 30 s (the agent stays up; what it cannot store is logged).
   */
  disk: { freeBytes: number | null, full: boolean, lastFullAt: string | null }
}

export interface NodeView {
  peerId: string
  name: string
  state: string
  /** "coordinator" for the coordinator this node recognises, else "member". */
  role: string
  /** The highest term the member said it knows (0 before its first beacon). */
  term: number
  /** Ids of the work it runs now. */
  running: string[]
  /** The execution providers that have run a model there, and its models with their latency there (p50 ms). */
  providers: string[]
  models: MemberHealth['models']
  /** Why it runs models slower than it measured (`cuda: device lost`), and the work it says it cannot run well. */
  degraded: string[]
  unable: MemberHealth['unable']
  /** What the member ingests over MQTT, as its last beacon said; null where it ingests nothing. */
  ingest: MemberHealth['ingest']
  addrs: string[]
  lastSeen: string
  health: Pick<MemberHealth, 'cpuPct' | 'load1' | 'memUsedBytes' | 'memTotalBytes' | 'diskFreeBytes' | 'uptimeS'> | null
  /** The hottest thermal zone in °C, null where the box has none readable (or before its first beacon). */
  tempC: number | null
  /** Accelerator devices present (`nvidia`, `dri`, `hailo`…), and CPU cores (0 before its first beacon). */
  accelerators: string[]
  cpus: number
  /** The peer ids of the members it says it holds a connection to, sorted; those this node does not know are left out. */
  links: string[]
}

/**
 * A member as the API shows it. `members` resolves the links its record gives as the ends of peer ids
 * (protocols/health.ts `LINK_LENGTH`) to the whole ids: `linkResolver` of the member list.
 */
export function nodeView (member: Member, coordinator: string | null, members: ReadonlyMap<string, string> = new Map()): NodeView {
  const h = member.health
  return {
    peerId: member.peerId,
    name: member.name,
    state: member.state,
    role: member.peerId === coordinator ? 'coordinator' : 'member',
    term: h?.term ?? 0,
    running: h?.running ?? [],
    providers: h?.providers ?? [],
    models: h?.models ?? [],
    degraded: h?.degraded ?? [],
    unable: h?.unable ?? [],
    ingest: h?.ingest ?? null,
    addrs: member.addrs,
    lastSeen: new Date(member.lastSeen).toISOString(),
    health: h == null
      ? null
      : {
          cpuPct: h.cpuPct,
          load1: h.load1,
          memUsedBytes: h.memUsedBytes,
          memTotalBytes: h.memTotalBytes,
          diskFreeBytes: h.diskFreeBytes,
          uptimeS: h.uptimeS
        },
    tempC: h?.tempC ?? null,
    accelerators: h?.accelerators ?? [],
    cpus: h?.cpus ?? 0,
    links: (h?.links ?? []).flatMap((end) => members.get(end) ?? []).sort()
  }
}

/** The end of each member's peer id (as links name it) → the whole id; an end two members share names neither. */
export function linkResolver (peerIds: Iterable<string>): Map<string, string> {
  const ends = new Map<string, string>()
  const shared = new Set<string>()
  for (const peerId of peerIds) {
    const end = peerId.slice(-LINK_LENGTH)
    if (ends.has(end) && ends.get(end) !== peerId) shared.add(end)
    ends.set(end, peerId)
  }
  for (const end of shared) ends.delete(end)
  return ends
}

/** Gossip traffic and refusals since the agent started (`GET /api/v1/mesh/gossip`). */
export interface GossipView {
  sentBytes: number
  receivedBytes: number
  published: number
  /**
   * Messages from peers refused, by "reason/topic" (member lists: "reason//noodle/member-sync/1.0.0"); gossipsub's
   * own refusals (signature, seqno, from) as "envelope/<error>".
   */
  rejected: Record<string, number>
}

/** One decision (`GET /api/v1/ahr/decisions`), as issued by the coordinator or received by this node. */
export interface DecisionView {
  id: string
  term: number
  coordinator: string
  target: string
  /** The target's name where this node knows it. */
  targetName: string | null
  action: string
  workId: string
  reason: string
  at: string
  /** applied | rejected | stale, or null until the target answers. */
  outcome: string | null
  detail: string | null
}

export function decisionView (d: DecisionRecord, names: ReadonlyMap<string, string>): DecisionView {
  return {
    id: d.id,
    term: d.term,
    coordinator: d.coordinator,
    target: d.target,
    targetName: names.get(d.target) ?? null,
    action: d.action,
    workId: d.workId,
    reason: d.reason,
    at: new Date(d.at).toISOString(),
    outcome: d.outcome,
    detail: d.detail
  }
}

/** One sensor metric as `GET /api/v1/sensors` lists it. */
export interface SensorReadingView {
  sensor: string
  metric: string
  value: number
  /** When the latest value was measured, and when its message arrived. */
  ts: string
  lastSeen: string
  /** Readings stored in all. */
  count: number
  /** Readings per second over the last few minutes. */
  ratePerS: number
}

export function sensorReadingView (s: SensorView): SensorReadingView {
  return { ...s, ts: new Date(s.ts).toISOString(), lastSeen: new Date(s.lastSeen).toISOString() }
}

/** A registered model as `GET /api/v1/models` lists it. */
export interface ModelView {
  id: string
  name: string
  sizeBytes: number
  opset: number
  inputs: TensorSpec[]
  outputs: TensorSpec[]
  /** Measured latency per execution provider, fastest first; none for a standby copy not compiled yet. */
  providers: ProviderBenchmark[]
  createdAt: string
  /** compiled or fetched (by an operator: kept), or standby (deleted once no work names it). */
  origin: string
}

export function modelView (m: ModelRecord): ModelView {
  return { id: m.id, name: m.name, sizeBytes: m.sizeBytes, opset: m.opset, inputs: m.inputs, outputs: m.outputs, providers: m.providers, createdAt: new Date(m.createdAt).toISOString(), origin: m.origin }
}

/** A camera as `GET /api/v1/cameras` lists it: figures for the cameras this node runs, where for the others. */
export interface CameraListView {
  camera: string
  /** The name of the node that runs it, and its peer id (names need not be unique: the page asks by peer id). */
  node: string
  peerId: string
  source: string | null
  model: string | null
  /** starting, running or failed here; remote when another node runs it. */
  state: string
  fpsIn: number | null
  fpsInferred: number | null
  skipped: number | null
  latencyMs: number | null
  /** What its latest result found (null where another node runs it). */
  detections: number | null
  /** "software", or the hardware that decodes it ("cuda", "vaapi"…); null where another node runs it. */
  decoder: string | null
  /** What reads its model's outputs (`yolov8`, `ssd`, `rt-detr`, `db-text`…), once it runs here. */
  detector: string | null
  /** Results whose outputs did not have the shape the model declared (null where another node runs it). */
  outputErrors: number | null
  /** Motion gating: frames in which something moved, and frames not inferred because nothing had. */
  motionFrames: number | null
  stillFrames: number | null
  error: string | null
}
