import { HealthBeaconSchema } from '../protocols/health.ts'
import type { HealthBeacon } from '../protocols/health.ts'

/**
 * A valid health beacon of a small CPU-only box, with the given top-level fields replaced (a shallow merge, so a
 * test or `mesh-publish --beacon` can change one field at a time). Fields with defaults take the schema's, so it
 * stays valid when a field is added.
 */
export function sampleBeacon (overrides: Partial<HealthBeacon> = {}): HealthBeacon {
  const base = HealthBeaconSchema.parse({
    v: 1,
    name: 'box',
    version: '0.1.0',
    startedAt: 1,
    seq: 1,
    role: 'member',
    uptimeS: 1,
    cpuPct: 1,
    load1: 0,
    memUsedBytes: 1,
    memTotalBytes: 2,
    diskFreeBytes: 3,
    tempC: null,
    accelerators: [],
    addrs: [],
    cpus: 4,
    providers: ['cpu'],
    models: [],
    term: 0,
    eligible: true,
    priority: 0,
    work: [],
    running: [],
    ingest: null
  })
  return { ...base, ...overrides }
}
