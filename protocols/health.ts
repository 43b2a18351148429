import { createHash } from 'node:crypto'
import { encode as encodeCbor } from 'cborg'
import { z } from 'zod'
import { cborCodec } from './codec.ts'
import { multiaddrText, nameText, peerIdText } from '../common/text.ts'
import { MODEL_ID } from './models.ts'
import { TOPICS } from './topics.ts'
import { DEFAULT_ACCEPTS, RemoteWorkAcceptsSchema, WorkItemWireSchema } from './work.ts'

/** Models a beacon lists at most (the most recently compiled first): the work that uses them is at most 32. */
export const MAX_BEACON_MODELS = 32

export const ROLES = ['member', 'coordinator'] as const
export type Role = typeof ROLES[number]

/** Why a box says it cannot run a piece of work as it should: its model cannot run here at all, or not at its fps. */
export const UNABLE_REASONS = ['cannot-run', 'too-slow'] as const
export type UnableReason = typeof UNABLE_REASONS[number]

/** What a box says of its own trouble: an execution provider lost at run time, as `cuda: device lost`. */
const degradedText = z.string().min(1).max(120).regex(/^[\x20-\x7e]+$/, 'must be printable ASCII')
const DEGRADED = z.array(degradedText).max(8)
const UNABLE = z.array(z.object({ work: nameText, why: z.enum(UNABLE_REASONS) })).max(32)

/**
 * Members a record says its box is connected to, at most: a full mesh of 129 members. Past that the picture of
 * the mesh lacks some of its links, and the record stays small.
 */
export const MAX_LINKS = 128
/**
 * A member linked to, as the last 8 characters of its peer id (as `noodle nodes` shows it): 9 bytes of CBOR
 * instead of 53, and among the members a receiver knows it names one (58^8 ≈ 1.3e14 values).
 */
export const LINK_LENGTH = 8
const LINKS = z.array(z.string().regex(/^[1-9A-HJ-NP-Za-km-z]{8}$/, 'is not the end of a peer id')).max(MAX_LINKS)

const count = z.int().nonnegative()
const bytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

/**
 * A node's health beacon as the agent uses it (membership, election, placement, views): what a member said of
 * itself, rebuilt by the receiver from the member's last pulse and record (`HealthWire` below). The sender's peer
 * id is not a field: it is the gossip message's signed `from`, which nobody else can forge. `v` is this shape's
 * version, not the wire's.
 */
export const HealthBeaconSchema = z.object({
  v: z.literal(1),
  name: nameText,
  version: z.string().min(1).max(32),
  /** When this run of the agent started (ms since the epoch) and a counter within it: together they order beacons. */
  startedAt: count,
  seq: count,
  role: z.enum(ROLES),
  uptimeS: z.number().nonnegative(),
  cpuPct: z.number().min(0).max(100),
  load1: z.number().nonnegative(),
  memUsedBytes: bytes,
  memTotalBytes: bytes,
  diskFreeBytes: bytes,
  /** Highest thermal-zone reading in °C, or null where the box exposes none. */
  tempC: z.number().min(-100).max(250).nullable(),
  /** Accelerator devices present, e.g. "nvidia", "dri", "apex" (Coral), "hailo". */
  accelerators: z.array(nameText.max(32)).max(16),
  /** Where to reach the node (multiaddrs without the /p2p part), so members that heard of it can dial it. */
  addrs: z.array(multiaddrText).max(8),
  // Fields added within v1 have defaults, so a beacon from an agent that predates them still reads: such an
  // agent knows nothing of elections or work, so it may not coordinate and runs nothing.
  /** CPU cores, and the inference back ends it has ("cpu", "cuda", "webgpu"…): what it can run. */
  cpus: z.int().min(1).max(4096).default(1),
  providers: z.array(nameText.max(32)).max(8).default([]),
  /** The models registered on the node, with their measured latency there (p50 ms, on its fastest provider). */
  models: z.array(z.object({ id: z.string().regex(MODEL_ID), p50Ms: z.number().nonnegative() })).max(MAX_BEACON_MODELS).default([]),
  /** Election: the highest term the node knows, whether it may coordinate, and its configured priority. */
  term: count.default(0),
  eligible: z.boolean().default(false),
  priority: z.int().min(-1000).max(1000).default(0),
  /** Work configured on the node (its home), and the ids of the work it runs now. */
  work: z.array(WorkItemWireSchema).max(32).default([]),
  running: z.array(nameText).max(64).default([]),
  /** What work homed elsewhere the node opens (its `remoteWork` policy), and the cameras it has credentials for. */
  accepts: RemoteWorkAcceptsSchema.default(DEFAULT_ACCEPTS),
  /** MQTT ingest totals and rate, or null where the node ingests nothing. */
  ingest: z.object({
    received: count,
    stored: count,
    rejected: count,
    perS: z.number().nonnegative(),
    brokerDropped: count,
    connected: z.boolean()
  }).nullable().default(null),
  /** Why the node runs models slower than it measured (providers lost at run time), and work it cannot run well. */
  degraded: DEGRADED.default([]),
  unable: UNABLE.default([]),
  /** The members it holds a connection to now, as the ends of their peer ids (`LINK_LENGTH`), sorted. */
  links: LINKS.default([])
})

export type HealthBeacon = z.infer<typeof HealthBeaconSchema>

const MODELS = z.array(z.string().regex(MODEL_ID)).max(MAX_BEACON_MODELS)

/**
 * What a member is, which changes seldom (a restart, a work or policy change, a compiled model): sent whole only
 * when it changed or someone asks, and named in every pulse by its `rev`.
 */
export const HealthRecordSchema = z.object({
  name: nameText,
  version: z.string().min(1).max(32),
  cpus: z.int().min(1).max(4096),
  providers: z.array(nameText.max(32)).max(8),
  accelerators: z.array(nameText.max(32)).max(16),
  addrs: z.array(multiaddrText).max(8),
  memTotalBytes: bytes,
  eligible: z.boolean(),
  priority: z.int().min(-1000).max(1000),
  work: z.array(WorkItemWireSchema).max(32),
  accepts: RemoteWorkAcceptsSchema,
  /** The ids of the models registered; each pulse gives their p50 latencies in this order. */
  models: MODELS,
  /** Left out while empty (a healthy box's record is as it was before they existed). */
  degraded: DEGRADED.optional(),
  unable: UNABLE.optional(),
  /** Left out while empty too: a record changes when its box's connections to members do, and only then. */
  links: LINKS.optional()
})

export type HealthRecord = z.infer<typeof HealthRecordSchema>

/**
 * The v2 health message (`noodle/2/node.health`), a CBOR array in this order (see `versionedCbor`). Every
 * interval a member sends its pulse: the figures that change, in integer units (tenths, hundredths) so that CBOR
 * packs them in 1–5 bytes, and `rev`, which names its record. The record rides along only when it changed, on
 * news (a member joined), when a peer subscribes, and when asked. `ask` lists members whose record the sender
 * lacks (it heard a `rev` it does not have): each of them answers with its record, at most once a second.
 * Sizes, encoded (test/protocols/codec.test.ts): a box with a camera, a model and MQTT ingest pulses 59 B (a bare
 * box 24 B), 496 B with its record, where v1 sent 857 B of JSON every interval; gossipsub's signed envelope adds
 * ~150 B to each message.
 */
export const HealthWireSchema = z.object({
  v: z.literal(2),
  /** When this run of the agent started (ms since the epoch) and a counter within it: together they order pulses. */
  startedAt: count,
  seq: count,
  /** The record's revision: the first 32 bits of the SHA-256 of its CBOR encoding (`revOf`). */
  rev: z.int().min(0).max(0xffffffff),
  /** ROLES' index. */
  role: z.int().min(0).max(ROLES.length - 1),
  term: count,
  uptimeDs: count,
  /** CPU % in tenths, 1-minute load in hundredths, °C in tenths. */
  cpuPm: z.int().min(0).max(1000),
  load1Cs: count,
  memUsedBytes: bytes,
  diskFreeBytes: bytes,
  tempDc: z.int().min(-1000).max(2500).nullable(),
  running: z.array(nameText).max(64),
  /** p50 latency in tenths of a ms of each model the record lists, in its order. */
  p50Dms: z.array(count).max(MAX_BEACON_MODELS),
  /** MQTT ingest: received, stored, rejected, messages per second in hundredths, broker-dropped, connected. */
  ingest: z.tuple([count, count, count, count, count, z.boolean()]).nullable(),
  record: HealthRecordSchema.optional(),
  ask: z.array(peerIdText).max(16).optional()
})

export type HealthWire = z.infer<typeof HealthWireSchema>

/** What a beacon says that changes seldom. */
export function recordOf (beacon: HealthBeacon): HealthRecord {
  const { name, version, cpus, providers, accelerators, addrs, memTotalBytes, eligible, priority, work, accepts, degraded, unable, links } = beacon
  return {
    name, version, cpus, providers, accelerators, addrs, memTotalBytes, eligible, priority, work, accepts, models: beacon.models.map((m) => m.id),
    ...(degraded.length > 0 ? { degraded } : {}),
    ...(unable.length > 0 ? { unable } : {}),
    ...(links.length > 0 ? { links } : {})
  }
}

/**
 * What a box's record says of its links: the members among `peers` (the remote peers of its open connections,
 * repeated where there are several), each as the end of its peer id, sorted, at most MAX_LINKS.
 */
export function linksOf (peers: Iterable<string>, isMember: (peerId: string) => boolean): string[] {
  const links = new Set<string>()
  for (const peer of peers) if (isMember(peer)) links.add(peer.slice(-LINK_LENGTH))
  return [...links].sort().slice(0, MAX_LINKS)
}

/** A record's revision: equal records, equal revisions, whoever computes them (a restart with nothing changed keeps it). */
export function revOf (record: HealthRecord): number {
  return createHash('sha256').update(encodeCbor(record)).digest().readUInt32BE(0)
}

const scaled = (value: number, by: number) => Math.max(0, Math.round(value * by))

/** The message that carries `beacon`: its pulse, with its record when `record` is given, and our asks. */
export function wireOf (beacon: HealthBeacon, rev: number, options: { record?: HealthRecord, ask?: string[] } = {}): HealthWire {
  const { ingest } = beacon
  return {
    v: 2,
    startedAt: beacon.startedAt,
    seq: beacon.seq,
    rev,
    role: ROLES.indexOf(beacon.role),
    term: beacon.term,
    uptimeDs: scaled(beacon.uptimeS, 10),
    cpuPm: Math.min(1000, scaled(beacon.cpuPct, 10)),
    load1Cs: scaled(beacon.load1, 100),
    memUsedBytes: beacon.memUsedBytes,
    diskFreeBytes: beacon.diskFreeBytes,
    tempDc: beacon.tempC === null ? null : Math.min(2500, Math.max(-1000, Math.round(beacon.tempC * 10))),
    running: beacon.running,
    p50Dms: beacon.models.map((m) => scaled(m.p50Ms, 10)),
    ingest: ingest === null ? null : [ingest.received, ingest.stored, ingest.rejected, scaled(ingest.perS, 100), ingest.brokerDropped, ingest.connected],
    ...(options.record === undefined ? {} : { record: options.record }),
    ...(options.ask === undefined || options.ask.length === 0 ? {} : { ask: options.ask })
  }
}

/** A whole beacon on the wire, record included (a newcomer's first, a test's, `mesh-publish --beacon`). */
export function beaconMessage (beacon: HealthBeacon): HealthWire {
  const record = recordOf(beacon)
  return wireOf(beacon, revOf(record), { record })
}

/**
 * The beacon a pulse and the member's record make together. The models are the record's with the pulse's p50s;
 * a model without one (an older record, while the new one is asked for) is left out until the record comes.
 */
export function beaconOf (wire: HealthWire, record: HealthRecord): HealthBeacon {
  const { ingest } = wire
  return {
    v: 1,
    name: record.name,
    version: record.version,
    startedAt: wire.startedAt,
    seq: wire.seq,
    role: ROLES[wire.role] as Role,
    uptimeS: wire.uptimeDs / 10,
    cpuPct: wire.cpuPm / 10,
    load1: wire.load1Cs / 100,
    memUsedBytes: wire.memUsedBytes,
    memTotalBytes: record.memTotalBytes,
    diskFreeBytes: wire.diskFreeBytes,
    tempC: wire.tempDc === null ? null : wire.tempDc / 10,
    accelerators: record.accelerators,
    addrs: record.addrs,
    cpus: record.cpus,
    providers: record.providers,
    models: record.models.slice(0, wire.p50Dms.length).map((id, i) => ({ id, p50Ms: (wire.p50Dms[i] as number) / 10 })),
    term: wire.term,
    eligible: record.eligible,
    priority: record.priority,
    work: record.work,
    running: wire.running,
    accepts: record.accepts,
    degraded: record.degraded ?? [],
    unable: record.unable ?? [],
    links: record.links ?? [],
    ingest: ingest === null
      ? null
      : { received: ingest[0], stored: ingest[1], rejected: ingest[2], perS: ingest[3] / 100, brokerDropped: ingest[4], connected: ingest[5] }
  }
}

/** A pulse is ~50 bytes and a record a few hundred, plus ~150 per work item; 16 KiB holds 32 items and refuses anything absurd. */
export const healthCodec = cborCodec(TOPICS.nodeHealth, 16 * 1024, 2, HealthWireSchema)
