import { z } from 'zod'
import { jsonCodec } from './codec.ts'
import { multiaddrText, nameText } from '../common/text.ts'
import { MODEL_ID } from './models.ts'
import { TOPICS } from './topics.ts'
import { DEFAULT_ACCEPTS, RemoteWorkAcceptsSchema, WorkItemWireSchema } from './work.ts'

/** Models a beacon lists at most (the most recently compiled first): the work that uses them is at most 32. */
export const MAX_BEACON_MODELS = 32

export const ROLES = ['member', 'coordinator'] as const
export type Role = typeof ROLES[number]

const count = z.int().nonnegative()
const bytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)

/**
 * A node's health beacon, published every `health.intervalMs`. The sender's peer id is not a field: it is the
 * gossip message's signed `from`, which nobody else can forge.
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
  }).nullable().default(null)
})

export type HealthBeacon = z.infer<typeof HealthBeaconSchema>

/** A beacon is a few hundred bytes, plus ~150 per work item; 16 KiB holds 32 items and refuses anything absurd. */
export const healthCodec = jsonCodec(TOPICS.nodeHealth, 16 * 1024, 1, HealthBeaconSchema)
